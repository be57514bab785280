"""Several scheduler replicas on one PostgreSQL: each work pool owned by one of them.

A pool's admission state (the core: its limit, its queues, the runs waiting and running)
lives in the memory of one process, which is what makes dispatch fast; two processes
each holding it would each enforce the limit on their own. So each pool has one owner at
a time, and only the owner dispatches it, records its workers' reports and reclaims its
runs. PostgreSQL is the coordinator; there is no consensus of our own:

- `scheduler_replicas`: every replica's row, its advertised address and when its lease
  expires; the replica renews it every quarter of `replica_ttl_seconds`.
- `pool_owners`: one row per pool, the replica that owns it and an **epoch** raised at
  every change of owner. A replica takes a pool (`CLAIM`) only when it has no owner or
  its owner's lease expired, in one statement the database serialises.

Fencing: every transaction that writes a pool's dispatch (leases in dispatch.py, workers'
reports in outcomes.py, every `change_state`: reclaims, expired leases, cancels) first
reads the pool's owner row with `FOR SHARE` (`Fence`): the row must still name this
replica at the epoch it took the pool with, else the transaction is refused before it
writes (`Fenced`), and the replica drops the pool. The share lock holds until commit,
so a takeover (an UPDATE of that row) waits for a write in flight and every write after
it is refused: a replica paused past its lease (SIGSTOP, a long GC, a partition) wakes
to find its writes refused, and can never admit past the limit nor dispatch a run twice.
The fencing transaction also sets `idle_in_transaction_session_timeout` to the TTL, so a
replica paused in the middle of one holds the lock no longer than that; a takeover waits
at most `CLAIM_LOCK_TIMEOUT` and tries again.

Taking a pool rebuilds its state from the database, the path a restarted server takes:
the live runs into the core, the runs of workers gone OFFLINE reclaimed; its workers,
redirected here, reconnect with what they hold (stream.py). Losing a pool (a refused
write, or the owner row seen to name another) empties its state and redirects its
workers. A replica that stops hands its pools back at once; one that dies loses them
when its lease expires.

SQLite has one server (db.lock_sqlite_for_one_server): there every pool is owned and
nothing here touches the database.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grpc import aio
from sqlalchemy import bindparam, text

from shiftboss.core import PoolState
from shiftboss.errors import Unavailable, error_for_code
from shiftboss.services import notify
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states
from shiftboss.v1 import heartbeats_pb2, heartbeats_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler

log = logging.getLogger("shiftboss.scheduler")

#: The channel of the scheduler's notices between replicas.
CHANNEL = "shiftboss_scheduler"
#: Longest a takeover waits for a write of the old owner in flight; it tries again next tick.
CLAIM_LOCK_TIMEOUT = "500ms"
#: Seconds between reads of an owned pool's waiting runs that its core lacks: a safety net
#: under the notices, which tell the owner of runs made through other replicas at once.
RECONCILE_SECONDS = 10.0
#: Metadata on a call one replica forwards to another: the receiver serves it itself.
FORWARDED_HEADER = "x-shiftboss-forwarded"

_RENEW = (
    "INSERT INTO scheduler_replicas (id, address, started, expires) "
    "VALUES ($1, $2, now(), now() + make_interval(secs => $3)) "
    "ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, expires = EXCLUDED.expires"
)
_VIEW = (
    "SELECT o.pool, o.replica, o.epoch, coalesce(r.address, ''), coalesce(r.expires > now(), false) "
    "FROM pool_owners o LEFT JOIN scheduler_replicas r ON r.id = o.replica"
)
#: One pool's owner, and whether it renewed its lease within the last half of it (it
#: renews every quarter): an owner that missed two renewals is not sent workers.
_OWNER = (
    "SELECT o.pool, o.replica, o.epoch, coalesce(r.address, ''), coalesce(r.expires > now(), false), "
    "coalesce(r.expires > now() + make_interval(secs => $2), false) "
    "FROM pool_owners o LEFT JOIN scheduler_replicas r ON r.id = o.replica WHERE o.pool = $1"
)
_LIVE = "SELECT id, address FROM scheduler_replicas WHERE expires > now() ORDER BY started, id"
_CLAIM = (
    "INSERT INTO pool_owners AS o (pool, replica, epoch, since) VALUES ($1, $2, 1, now()) "
    "ON CONFLICT (pool) DO UPDATE SET replica = $2, epoch = o.epoch + 1, since = now() "
    "WHERE (o.replica IS NULL OR o.replica = $2 OR NOT EXISTS "
    "  (SELECT 1 FROM scheduler_replicas r WHERE r.id = o.replica AND r.expires > now())) "
    "AND EXISTS (SELECT 1 FROM scheduler_replicas me WHERE me.id = $2 AND me.expires > now()) "
    "RETURNING epoch"
)
_RELEASE = "UPDATE pool_owners SET replica = NULL WHERE replica = $1 AND pool = ANY($2::VARCHAR[])"
#: A pool handed to another live replica (rebalancing): the epoch moves on, as at a takeover.
_HAND = (
    "UPDATE pool_owners SET replica = $3, epoch = epoch + 1, since = now() "
    "WHERE pool = $1 AND replica = $2 AND epoch = $4 RETURNING epoch"
)
_LEAVE = "DELETE FROM scheduler_replicas WHERE id = $1"
#: Replicas that advertised this very address before: this server, restarted (two live
#: servers cannot listen on one address). Their pools are free at once, not a TTL later.
_SUPERSEDE = "UPDATE scheduler_replicas SET expires = now() WHERE address = $1 AND id <> $2 AND expires > now()"
#: The fence: the owner rows of these pools that still name this replica, share-locked.
_FENCE = (
    "SELECT pool, epoch, set_config('idle_in_transaction_session_timeout', $3, true) "
    "FROM pool_owners WHERE replica = $1 AND pool = ANY($2::VARCHAR[]) FOR SHARE"
)
_FENCE_ORM = text(
    "SELECT pool, epoch, set_config('idle_in_transaction_session_timeout', :idle, true) "
    "FROM pool_owners WHERE replica = :replica AND pool IN :pools FOR SHARE"
).bindparams(bindparam("pools", expanding=True))


class NotOwner(Unavailable):
    """This replica does not own the pool: its dispatch runs elsewhere."""


class Fenced(NotOwner):
    """The database refused a write: the pool's owner row names another replica, or a later epoch."""


@dataclass(slots=True)
class Owner:
    replica: str | None
    epoch: int
    address: str
    live: bool
    #: Renewed its lease lately: it answers (see _OWNER).
    fresh: bool = True


class OwnerSilent(Unavailable):
    """The pool's owner has not renewed its lease lately (dead, or paused): not sent to it;
    another replica takes the pool once its lease expires."""


@dataclass(slots=True)
class Fence:
    """What one fenced transaction checks first: the epochs its pools were taken at."""

    ownership: Ownership
    epochs: dict[str, int]

    async def check(self, connection: Any) -> None:
        """On an asyncpg connection, inside its transaction (hot.py)."""
        rows = await connection.fetch(_FENCE, self.ownership.replica, list(self.epochs), self.ownership.idle_ms)
        self._verify({row[0]: row[1] for row in rows})

    async def check_session(self, session: Any) -> None:
        """On a SQLAlchemy session, inside its transaction (Scheduler.change_state)."""
        params = {"replica": self.ownership.replica, "pools": list(self.epochs), "idle": self.ownership.idle_ms}
        rows = (await session.execute(_FENCE_ORM, params)).all()
        self._verify({row[0]: row[1] for row in rows})

    def _verify(self, found: dict[str, int]) -> None:
        stale = sorted(pool for pool, epoch in self.epochs.items() if found.get(pool) != epoch)
        if stale:
            for pool in stale:
                self.ownership.lose(pool, self.epochs[pool], "a write for it was refused: another replica owns it now")
            raise Fenced(f"work pool {stale[0]!r} is owned by another scheduler replica now; try again")


def _cleared(state: PoolState) -> PoolState:
    """The pool's state with its limits and queues but no runs."""
    return PoolState.from_snapshot(dataclasses.replace(state.snapshot(), runs=[]))


def advertised(settings: Any, local_address: str) -> str:
    """Where other replicas and workers reach this one: SHIFTBOSS_ADVERTISE_ADDRESS, else the
    address it listens on (this host's name when it listens on every interface)."""
    if settings.advertise_address:
        return settings.advertise_address
    if settings.host in ("0.0.0.0", "::", "[::]", ""):
        return f"{socket.gethostname()}:{local_address.rsplit(':', 1)[1]}"
    return local_address


class Ownership:
    def __init__(self, service: Scheduler) -> None:
        self.service = service
        self.db = service.db
        self.settings = service.settings
        #: Replicas exist only on PostgreSQL; on SQLite this one owns every pool.
        self.enabled = not self.db.is_sqlite
        self.replica = f"{socket.gethostname()[:32]}-{uuid.uuid4().hex[:12]}"
        self.address = ""
        self.ttl = float(self.settings.replica_ttl_seconds)
        if not self.ttl > 0:
            raise ValueError(f"SHIFTBOSS_REPLICA_TTL_SECONDS: must be more than 0, got {self.settings.replica_ttl_seconds}")
        self.idle_ms = str(max(1000, int(self.ttl * 1000)))
        #: pool -> the epoch this replica took it at.
        self.owned: dict[str, int] = {}
        #: Addresses of the replicas alive at the last tick, this one first.
        self.replicas: list[str] = []
        self._locks: dict[str, asyncio.Lock] = {}
        #: The newest run's seq at the last two reconciles (see `_reconcile`).
        self._marks: collections.deque[int] = collections.deque(maxlen=2)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: notify.Listener | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._leaving: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ what the rest asks

    def owns(self, pool: str) -> bool:
        return not self.enabled or pool in self.owned

    def fence(self, pools: Any) -> Fence | None:
        """The fence of a transaction writing these pools' dispatch; None on SQLite.
        NotOwner at once for a pool this replica does not own."""
        if not self.enabled:
            return None
        epochs = {}
        for pool in pools:
            epoch = self.owned.get(pool)
            if epoch is None:
                raise NotOwner(f"work pool {pool!r} is dispatched by another scheduler replica")
            epochs[pool] = epoch
        return Fence(self, epochs)

    async def check(self, session: Any, pool: str) -> None:
        """Fence an ORM transaction that changes a run of this pool."""
        fence = self.fence([pool])
        if fence is not None:
            await fence.check_session(session)

    async def route(self, pool: str) -> str | None:
        """Where this pool's dispatch runs: None for here (owned, or just taken because it
        had no live owner), else the owner's address."""
        if not self.enabled or pool in self.owned:
            return None
        if self._stopping:
            raise Unavailable("this scheduler replica is stopping; connect to another")
        async with self._lock(pool):
            if pool in self.owned:
                return None
            owner = await self._owner(pool)
            if owner is None or not owner.live or owner.replica in (None, self.replica):
                epoch = await self._claim(pool)
                if epoch is not None:
                    await self._take(pool, epoch)
                    return None
                owner = await self._owner(pool)
        if owner is not None and owner.live and owner.replica not in (None, self.replica):
            if not owner.fresh or owner.address == self.address:  # silent, or this server before a restart
                raise OwnerSilent(
                    f"the scheduler replica that dispatches work pool {pool!r} ({owner.address}) does not answer; "
                    "another takes the pool within its lease"
                )
            return owner.address
        raise Unavailable(f"work pool {pool!r} is changing owner between scheduler replicas; try again in a moment")

    async def forward(self, context: Any, method: str, request: Any, pool: str) -> Any:
        """A call that needs the pool's admission state or its workers, answered by the
        pool's owner: its answer when another replica owns the pool, None to serve it here.
        A call forwarded to us is never forwarded again (two replicas that disagree for a
        moment about the owner answer UNAVAILABLE, which the caller may retry)."""
        if not self.enabled or pool in self.owned:
            return None
        address = await self.route(pool)
        if address is None:
            return None
        metadata = context.invocation_metadata() or () if context is not None else ()
        if any(key == FORWARDED_HEADER for key, _ in metadata):
            raise Unavailable(f"work pool {pool!r} is changing owner between scheduler replicas; try again in a moment")
        peers = self.service.mesh.peers
        stub = peers.stub_at(address, scheduler_pb2_grpc.SchedulerServiceStub)
        try:
            return await getattr(stub, method)(
                request, timeout=self.settings.request_timeout, metadata=(*peers.metadata, (FORWARDED_HEADER, self.replica))
            )
        except aio.AioRpcError as exc:
            raise error_for_code(exc.code().name, exc.details() or exc.code().name) from None

    async def forward_stream(self, context: Any, method: str, request: Any, pool: str) -> Any:
        """A server stream (a run's events or logs, followed) relayed from the pool's owner,
        where the run's changes happen: an async iterator, or None to serve it here."""
        if not self.enabled or pool in self.owned:
            return None
        address = await self.route(pool)
        if address is None:
            return None
        metadata = context.invocation_metadata() or () if context is not None else ()
        if any(key == FORWARDED_HEADER for key, _ in metadata):
            raise Unavailable(f"work pool {pool!r} is changing owner between scheduler replicas; try again in a moment")
        peers = self.service.mesh.peers
        stub = peers.stub_at(address, scheduler_pb2_grpc.SchedulerServiceStub)
        call = getattr(stub, method)(request, metadata=(*peers.metadata, (FORWARDED_HEADER, self.replica)))

        async def relay() -> Any:
            try:
                async for item in call:
                    yield item
            except aio.AioRpcError as exc:
                if exc.code().name != "CANCELLED":
                    raise error_for_code(exc.code().name, exc.details() or exc.code().name) from None
            finally:
                call.cancel()

        return relay()

    def redirect(self, address: str, reason: str) -> scheduler_pb2.Redirect:
        return scheduler_pb2.Redirect(address=address, reason=reason, replicas=self.replicas)

    # ------------------------------------------------------------ notices to the owner

    async def tell_new_runs(self, statements: Any, runs: list[Any]) -> set[str]:
        """New runs of pools owned elsewhere, told to their owner inside the transaction that
        inserts them (PostgreSQL delivers a notice at commit: one statement more, no round
        trip of its own). The pools told; the caller tells the others after commit should
        this replica have lost one of them meanwhile (`tell_runs`)."""
        if not self.enabled:
            return set()
        by_pool: dict[str, list[Any]] = {}
        for run in runs:
            if run.pool not in self.owned:
                by_pool.setdefault(run.pool, []).append(run)
        payloads = []
        for pool, added in by_pool.items():
            rows = [[r.seq, r.queue, run_store.as_utc(r.scheduled_start).timestamp()] for r in added]
            for part in notify.chunks(rows, lambda r: len(r[1]) + 40):
                payloads.append(notify.payload({"kind": "runs", "pool": pool, "add": part}, self.replica))
        if payloads:  # one statement for every pool of the batch
            await statements.db.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, payloads)
        return set(by_pool)

    def tell_runs(self, pool: str, added: list[Any] = (), dropped: list[int] = ()) -> None:  # type: ignore[assignment]
        """Runs of a pool owned elsewhere, written here (new) or deleted here: its owner's
        core learns of them from a notice (the owner loads what it does not hold)."""
        if not self.enabled or pool in self.owned:
            return
        rows = [[r.seq, r.queue, run_store.as_utc(r.scheduled_start).timestamp()] for r in added]
        for part in notify.chunks(rows, lambda r: len(r[1]) + 40):
            self._send({"kind": "runs", "pool": pool, "add": part})
        for part in notify.chunks(list(dropped), lambda _: 12):
            self._send({"kind": "runs", "pool": pool, "drop": part})

    def tell_offline(self, pool: str, worker: str) -> None:
        """A worker of a pool owned elsewhere went OFFLINE (seen here): its owner reclaims."""
        if self.enabled and pool not in self.owned:
            self._send({"kind": "offline", "pool": pool, "worker": worker})

    def _send(self, notice: dict[str, Any]) -> None:
        self._spawn(self._notify(notice))

    async def _notify(self, notice: dict[str, Any]) -> None:
        try:
            await notify.notify(self.db, CHANNEL, notice, self.replica)
        except Exception as exc:  # noqa: BLE001 - the owner's next takeover or resync reads the database
            log.warning("notice to the other scheduler replicas not sent: %s", exc)

    def _received(self, notice: dict[str, Any]) -> None:
        kind = notice.get("kind")
        if kind == "owners":
            self._wake.set()
            return
        pool = notice.get("pool", "")
        if pool not in self.owned:
            return
        if kind == "runs":
            dispatcher = self.service.dispatcher
            if notice.get("add"):
                dispatcher.load(_Noticed(seq, pool, queue, ts) for seq, queue, ts in notice["add"])
            for seq in notice.get("drop", ()):
                runtime = dispatcher.pools.get(pool)
                if runtime is not None and seq in runtime.state and not runtime.state.is_occupying(seq):
                    runtime.state.remove_run(seq)
        elif kind == "offline":
            from shiftboss.services.scheduler.background import reclaim

            worker = notice.get("worker", "")
            self._spawn(reclaim(self.service, worker, f"worker {worker.partition('/')[2]} went offline"))

    def _resync(self) -> None:
        """Notices may have been missed while the listening connection was down: every
        owned pool's waiting runs are read again from the database."""
        for pool in list(self.owned):
            self._spawn(self._reload(pool, waiting_only=True))

    async def _reload(self, pool: str, waiting_only: bool, after: int | None = None) -> None:
        """The pool's live runs (or its waiting ones only) that its core lacks, read under
        the pool's lock, which every change of its runs' states also holds: a run that ends
        meanwhile cannot come back as holding a slot."""
        dispatcher = self.service.dispatcher
        runtime = dispatcher.pools.get(pool)
        if runtime is None:
            return
        async with runtime.lock:
            if pool not in self.owned:
                return
            async with self.db.reading() as session:
                rows = await run_store.live(session, pool, waiting_only, after)
            missing = [r for r in rows if r.seq not in runtime.state]
            dispatcher.load(missing)
        if missing and waiting_only:
            log.info("work pool %s: %d waiting runs read again (a notice missed)", pool, len(missing))

    # ------------------------------------------------------------ lifecycle

    async def start(self, local_address: str) -> None:
        if not self.enabled:
            return
        self.address = advertised(self.settings, local_address)
        self._listener = notify.listener_for(self.db.url)
        await self._listener.listen(CHANNEL, self._received, self._resync)
        async with self.db.reading() as session:  # the pools' first load reads all after this
            self._marks.append(await run_store.newest_seq(session))
        await self._renew()
        async with self.db.driver() as connection:
            superseded = await connection.execute(_SUPERSEDE, self.address, self.replica)
        if superseded != "UPDATE 0":
            log.info("scheduler replica %s replaces the one that ran at %s before", self.replica, self.address)
        self._task = asyncio.create_task(self._loop(), name="scheduler-ownership")
        if self.settings.auth and not self.settings.mesh_token:
            log.warning(
                "--auth without SHIFTBOSS_MESH_TOKEN: other scheduler replicas on this database cannot forward calls "
                "to this one; give every replica the same SHIFTBOSS_MESH_TOKEN"
            )
        log.info("scheduler replica %s at %s (ownership lease %gs)", self.replica, self.address, self.ttl)

    def closing(self) -> None:
        """The server stops: its pools are handed back now, while its calls drain (a report
        still in flight is refused, and its worker sends it again to the next owner)."""
        if self.enabled and self._leaving is None and self._listener is not None:
            self._stopping = True  # no pool is taken from here on
            self._leaving = asyncio.ensure_future(self._leave())

    async def _leave(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pools, self.owned = list(self.owned), {}
        try:
            async with self.db.driver() as connection:
                await connection.execute(_RELEASE, self.replica, pools)
                await connection.execute(_LEAVE, self.replica)
            await notify.notify(self.db, CHANNEL, {"kind": "owners"}, self.replica)
            log.info("scheduler replica %s handed back %d work pools", self.replica, len(pools))
        except Exception as exc:  # noqa: BLE001 - then they are taken when the lease expires
            log.warning("pools not handed back on stopping: %s", exc)

    async def stop(self) -> None:
        """Hand every pool back at once (another replica takes them at its notice)."""
        self.closing()
        if self._leaving is not None:
            await self._leaving
        for task in list(self._background):
            task.cancel()
        if self._listener is not None:
            await notify.release(self._listener)
            self._listener = None

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lock(self, pool: str) -> asyncio.Lock:
        lock = self._locks.get(pool)
        if lock is None:
            lock = self._locks[pool] = asyncio.Lock()
        return lock

    async def _loop(self) -> None:
        period = self.ttl / 4
        ticks = 0
        while True:
            ticks += 1
            try:
                await self.tick()
                if ticks % max(1, round(RECONCILE_SECONDS / period)) == 0:
                    await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database went away a moment: next tick
                log.warning("scheduler ownership tick failed: %s", exc)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), period)

    async def _reconcile(self) -> None:
        """Runs that a lost notice left out of an owned pool's core (see notify.py). A notice
        is lost only for a run made lately, so only runs made since the reconcile before
        last are read (by seq, along the primary key): the reconcile costs what was made
        meanwhile, not what waits, a million queued runs or ten. The first mark is taken at
        start, once notices are heard: what was made before, the pools' first load reads."""
        async with self.db.reading() as session:
            newest = await run_store.newest_seq(session)
        after = self._marks[0]
        self._marks.append(newest)
        for pool in list(self.owned):
            await self._reload(pool, waiting_only=True, after=after)

    async def _renew(self) -> None:
        async with self.db.driver() as connection:
            await connection.execute(_RENEW, self.replica, self.address, self.ttl)

    async def tick(self) -> None:
        """Renew this replica's lease; drop pools another took; take pools nobody live owns."""
        # Only pools owned before the owners are read are judged by what was read: one taken
        # meanwhile (a worker's stream claims its pool at once: `route`) is not in it yet.
        owned_before = dict(self.owned)
        await self._renew()
        async with self.db.driver() as connection:
            view = {row[0]: Owner(row[1], row[2], row[3], row[4]) for row in await connection.fetch(_VIEW)}
            live = [(row[0], row[1]) for row in await connection.fetch(_LIVE)]
        self.replicas = [self.address] + [address for replica, address in live if replica != self.replica]
        for pool, epoch in owned_before.items():
            owner = view.get(pool)
            if owner is None or owner.replica != self.replica or owner.epoch != epoch:
                self.lose(pool, epoch, "another replica owns it now")
        known = list(self.service.dispatcher.pools)
        # Pools another replica handed to this one (rebalancing): taken at the epoch it set.
        for pool in known:
            owner = view.get(pool)
            if pool not in self.owned and owner is not None and owner.replica == self.replica:
                async with self._lock(pool):
                    if pool not in self.owned:
                        await self._take(pool, owner.epoch)
        free = [p for p in known if p not in self.owned and (p not in view or view[p].replica is None or not view[p].live)]
        # A fair share: with N pools and R live replicas, none takes more than ceil(N / R)
        # while another replica could take them (spreading the pools over the replicas).
        share = math.ceil(len(known) / max(1, len(live))) if known else 0
        for pool in free:
            if len(self.owned) >= share and len(live) > 1:
                break
            async with self._lock(pool):
                if pool in self.owned:
                    continue
                epoch = await self._claim(pool)
                if epoch is not None:
                    await self._take(pool, epoch)
        await self._rebalance(view, live)

    async def _rebalance(self, view: dict[str, Owner], live: list[tuple[str, str]]) -> None:
        """Hand one pool to the live replica that owns the fewest, while this one owns two
        or more than it: pools spread over the replicas when one joins, a pool at a time,
        its dispatch stopped only while the other rebuilds it."""
        if len(live) < 2 or len(self.owned) < 2:
            return
        counts = {replica: 0 for replica, _ in live}
        for owner in view.values():
            if owner.replica in counts and owner.live:
                counts[owner.replica] += 1
        counts[self.replica] = len(self.owned)
        least = min(counts, key=lambda r: (counts[r], r))
        if least == self.replica or len(self.owned) - counts[least] < 2:
            return
        address = dict(live)[least]
        runtimes = self.service.dispatcher.pools
        pool = min(self.owned, key=lambda p: (len(runtimes[p].workers) if p in runtimes else 0, p))
        epoch = self.owned[pool]
        async with self._lock(pool):
            if self.owned.get(pool) != epoch:
                return
            del self.owned[pool]  # no write for it from here on: each is refused before the database
            try:
                async with self.db.driver() as connection:
                    await connection.execute(f"SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT}'")
                    handed = await connection.fetchval(_HAND, pool, self.replica, least, epoch)
            except Exception:
                self.owned[pool] = epoch  # still ours: nothing changed in the database
                raise
            if handed is None:  # the row moved meanwhile: another replica owns it now
                log.info("work pool %s was no longer this replica's to hand over", pool)
            else:
                log.info("scheduler replica %s handed work pool %s to %s (epoch %d)", self.replica, pool, address, handed)
        await self._drop(pool, address)
        await self._notify({"kind": "owners"})

    async def _owner(self, pool: str) -> Owner | None:
        async with self.db.driver() as connection:
            row = await connection.fetchrow(_OWNER, pool, self.ttl / 2)
        return None if row is None else Owner(row[1], row[2], row[3], row[4], row[5])

    async def _claim(self, pool: str) -> int | None:
        """Take the pool if it has no live owner: its new epoch, or None."""
        import asyncpg

        try:
            async with self.db.driver() as connection:
                await connection.execute(f"SET LOCAL lock_timeout = '{CLAIM_LOCK_TIMEOUT}'")
                return await connection.fetchval(_CLAIM, pool, self.replica)
        except asyncpg.LockNotAvailableError:
            return None  # the old owner's write in flight holds the row: next tick

    async def _take(self, pool: str, epoch: int) -> None:
        """Rebuild the pool's state from the database, as a restarted server does."""
        dispatcher = self.service.dispatcher
        runtime = dispatcher.pools.get(pool)
        if runtime is None:  # not followed here (yet): rebuilt when it is (Dispatcher.apply_pool)
            self.owned[pool] = epoch
            return
        async with runtime.lock:
            runtime.state = _cleared(runtime.state)
            self.owned[pool] = epoch
            async with self.db.reading() as session:
                rows = await run_store.live(session, pool)
            dispatcher.load(rows)
        dispatcher.kick(pool)
        log.info("scheduler replica %s took work pool %s (epoch %d, %d live runs)", self.replica, pool, epoch, len(rows))
        self._spawn(self._reclaim_offline(pool))

    async def _reclaim_offline(self, pool: str) -> None:
        """Runs of this pool held by workers that went OFFLINE while no replica owned it."""
        from shiftboss.services.scheduler.background import reclaim

        service = self.service
        stub = service.mesh.peers.stub("heartbeats", heartbeats_pb2_grpc.HeartbeatServiceStub)
        try:
            listed = await service.call(stub.ListWorkers, heartbeats_pb2.ListWorkersRequest(pool=pool))
            online = {f"{w.pool}/{w.name}" for w in listed.workers if w.status == heartbeats_pb2.ONLINE}
            async with self.db.reading() as session:
                holders = await run_store.holders(session, pool)
        except Exception as exc:  # noqa: BLE001 - they are reclaimed when they go OFFLINE again
            log.warning("workers of work pool %s not checked: %s", pool, exc)
            return
        for worker in sorted(holders - online - set(service.dispatcher.sessions)):
            if pool in self.owned:
                await reclaim(service, worker, f"worker {worker} is offline")

    def lose(self, pool: str, epoch: int, why: str) -> None:
        """This replica no longer owns the pool (taken at `epoch`): forget its runs, send its
        workers to the new owner."""
        if self.owned.get(pool) != epoch:
            return
        del self.owned[pool]
        log.warning("scheduler replica %s lost work pool %s: %s", self.replica, pool, why)
        self._spawn(self._drop(pool))

    async def _drop(self, pool: str, address: str | None = None) -> None:
        dispatcher = self.service.dispatcher
        runtime = dispatcher.pools.get(pool)
        if runtime is None:
            return
        async with runtime.lock:
            if pool in self.owned:  # taken back meanwhile
                return
            runtime.state = _cleared(runtime.state)
            sessions = list(runtime.workers)
        if address is None:
            try:
                owner = await self._owner(pool)
                address = owner.address if owner is not None and owner.live and owner.replica != self.replica else ""
            except Exception:  # noqa: BLE001 - the worker goes back to where it was configured to
                address = ""
        for session in sessions:
            dispatcher.detach(session)
            session.send(scheduler_pb2.SchedulerMessage(redirect=self.redirect(address, f"work pool {pool!r} moved to another scheduler replica")))
            session.close()

    def pool_gone(self, pool: str) -> None:
        """The pool was deleted: no longer owned, its owner row removed."""
        if self.owned.pop(pool, None) is not None:
            self._spawn(self._forget_row(pool))

    async def _forget_row(self, pool: str) -> None:
        try:
            async with self.db.driver() as connection:
                await connection.execute("DELETE FROM pool_owners WHERE pool = $1 AND replica = $2", pool, self.replica)
        except Exception as exc:  # noqa: BLE001 - a row left names a pool nobody follows: harmless
            log.info("owner row of deleted work pool %s not removed: %s", pool, exc)

    def pool_appeared(self, pool: str) -> None:
        """A pool's runtime made here (Dispatcher.apply_pool): if this replica owns the pool
        already (taken before it was followed), its runs are read; else one tick may take it."""
        if not self.enabled:
            return
        if pool in self.owned:
            self._spawn(self._reload(pool, waiting_only=False))
        else:
            self._wake.set()


@dataclass(slots=True)
class _Noticed:
    """A new run as a notice carries it: what the core needs (Dispatcher.load)."""

    seq: int
    pool: str
    queue: str
    scheduled: float
    state: str = states.SCHEDULED

    @property
    def scheduled_start(self) -> Any:
        from datetime import datetime, timezone

        return datetime.fromtimestamp(self.scheduled, timezone.utc)


__all__ = ["FORWARDED_HEADER", "Fence", "Fenced", "NotOwner", "Ownership"]
