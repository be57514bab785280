"""The scheduler's engine: everything below the gRPC servicer (service.py).

`Scheduler` holds one replica's state and does its work: its pools' admission state and
their dispatcher, the worker streams and the outcome writer, run creation, pool
ownership and the background tasks. It is the one way a run changes state (`transition`,
checked by states.py). Below it the store (runs.py, hot.py, deployments.py) holds the
statements on runs and deployments; beside it, deploying.py, run_control.py and
run_views.py serve what users do and read. None of them knows the servicer above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shiftboss.entrypoints import admitted
from shiftboss.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from shiftboss.services.db import open_database, release_database
from shiftboss.services.scheduler import background, deployments, retries, states
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler.creation import DeploymentReader, RunInserter, StaleDeployment
from shiftboss.services.scheduler.dispatch import Dispatcher
from shiftboss.services.scheduler.models import DeploymentRow, FlowRunDraft, FlowRunRow, RunShape, new_id, now_utc
from shiftboss.services.scheduler.ownership import Ownership
from shiftboss.services.scheduler.rendering import RenderCache, Rendering
from shiftboss.services.scheduler.secret_values import check_unsealed, open_variables, seal_configuration, seal_variables
from shiftboss.services.scheduler.stream import StreamHandler
from shiftboss.services.scheduler.telemetry import observe
from shiftboss.services.scheduler.wire import log_event, run_to_proto, state_event, transition_event
from shiftboss.services.sealing import Seal, decode_key, new_key_text
from shiftboss.v1 import pools_pb2, pools_pb2_grpc, scheduler_pb2, templates_pb2, templates_pb2_grpc

log = logging.getLogger("shiftboss.scheduler")

#: Times a new run is made again when its deployment changed before it was written.
MAX_CREATE_ATTEMPTS = 5
#: Longest idempotency key a create takes (a UUID is 32 to 36).
MAX_IDEMPOTENCY_KEY = 128
#: Furthest ahead a run may be started with start_in: ten years.
MAX_START_IN_SECONDS = 10 * 365 * 24 * 3600.0


class Scheduler:
    """One scheduler replica's state and operations; the servicer's one collaborator."""

    name = "scheduler"

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self.settings = mesh.settings
        self.db = open_database(self.settings.database_url_for(self.name))
        # On PostgreSQL with no key configured, the replicas' shared key replaces this at start.
        self.seal = Seal.load(self.settings.secret_key, self.settings.home) if self.settings.secret_key or self.db.is_sqlite else Seal(os.urandom(32))
        self.dispatcher = Dispatcher(self.db, self.settings, self.seal)
        #: Which pools this replica dispatches, when several share one PostgreSQL.
        self.ownership = Ownership(self)
        if self.ownership.enabled:
            self.dispatcher.ownership = self.ownership
        self.ready = asyncio.Event()
        self.events = self.dispatcher.events
        self.stream = StreamHandler(self)
        self.inserts = RunInserter(self)
        self.deployment_reader = DeploymentReader(self)
        self.renders = RenderCache(self)
        self.tasks: list[asyncio.Task[None]] = []
        self.schedules_due = asyncio.Event()
        self.observer = observe(self)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.db.upgrade(self.name)
        if not self.settings.secret_key and not self.db.is_sqlite:
            self.seal.rekey(await shared_key(self.db))
        await self.ownership.start(self.mesh.peers.local_address)
        self.stream.outcomes.start()
        self.inserts.start()
        self.deployment_reader.start()
        self.tasks = background.start_all(self)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ready.wait(), 30)

    def closing(self) -> None:
        self.stream.drain_all("the server is stopping")
        self.events.close()
        self.ownership.closing()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.deployment_reader.stop()
        await self.inserts.stop()
        await self.stream.outcomes.stop()
        await self.ownership.stop()
        await self.dispatcher.close()
        if self.observer is not None:
            self.observer.close()
        await release_database(self.db)

    # ------------------------------------------------------------ peers

    @property
    def pools(self) -> pools_pb2_grpc.PoolServiceStub:
        return self.mesh.peers.stub("pools", pools_pb2_grpc.PoolServiceStub)

    @property
    def templates(self) -> templates_pb2_grpc.TemplateServiceStub:
        return self.mesh.peers.stub("templates", templates_pb2_grpc.TemplateServiceStub)

    async def call(self, method: Any, request: Any) -> Any:
        return await self.mesh.peers.call(method, request)

    async def render(self, pool: str, deployment_variables: dict[str, Any], run_variables: dict[str, Any]) -> Rendering:
        """The job configuration, as TemplateService renders it (see rendering.py)."""
        return await self.renders.render(pool, deployment_variables, run_variables)

    async def check_variables(self, pool: str, job_variables: dict[str, Any]) -> frozenset[str]:
        """A deployment's job variables, checked against its pool's template: each must be
        declared and fit its schema; what the schema requires may be left to the runs.
        Returns the names of the template's secret variables."""
        check_unsealed(job_variables)
        request = templates_pb2.RenderRequest(pool=pool, leave_required=True)
        request.deployment_variables.update(job_variables)
        return frozenset((await self.call(self.templates.Render, request)).secret_variables)

    def stored_variables(self, secrets: frozenset[str], job_variables: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, Any]:
        """Job variables as stored: secret values sealed (see secret_values.py)."""
        return seal_variables(self.seal, secrets, job_variables, before)

    async def check_entrypoint(self, pool: str, entrypoint: str) -> None:
        """Refuse an entrypoint the pool's policy does not admit (shiftboss.entrypoints)."""
        runtime = self.dispatcher.pools.get(pool)
        if runtime is not None:
            allowed = runtime.allowed_entrypoints
        else:
            allowed = list((await self.call(self.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=pool))).allowed_entrypoints)
        if not admitted(entrypoint, allowed):
            raise FailedPrecondition(
                f"entrypoint: {entrypoint!r} is not among the entrypoints work pool {pool!r} allows ({', '.join(allowed)})",
                field="entrypoint",
            )

    async def check_queue(self, pool: str, queue: str) -> None:
        await self.call(self.pools.GetWorkQueue, pools_pb2.WorkQueueRef(name=queue, pool=pool, without_health=True))

    async def queue_or_default(self, pool: str, queue: str) -> str:
        """The queue named, once it exists; none named: the pool's default queue, which keeps
        that role when renamed."""
        if queue:
            await self.check_queue(pool, queue)
            return queue
        reply = await self.call(self.pools.GetWorkPool, pools_pb2.WorkPoolRef(name=pool))
        return reply.default_queue or "default"

    async def rename_queue(self, pool: str, name: str, new_name: str) -> tuple[int, int]:
        """Deployments, runs and the admission state follow a queue's new name, under the
        pool's lock so that no state change sees one name in the database and the other in
        the core. Applied again, it changes nothing."""
        async with self.lock_for(pool):
            async with self.db.transaction() as session:
                moved = await deployments.move_queue(session, pool, name, new_name)
            for row in list(self.deployment_reader.kept.values()):
                if row.pool == pool and row.queue == name:
                    self.deployment_reader.forget(row)
            self.dispatcher.rename_queue(pool, name, new_name)
        if any(moved):
            log.info("work queue %r of pool %r renamed %r: %d deployments and %d runs follow", name, pool, new_name, *moved)
        return moved

    # ------------------------------------------------------------ runs: the one way a state changes

    def lock_for(self, pool: str) -> Any:
        runtime = self.dispatcher.pools.get(pool)
        return runtime.lock if runtime is not None else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def locks_for(self, pools: Iterable[str]) -> AsyncIterator[None]:
        """Several pools' locks, always taken in name order (an admission pass holds one)."""
        async with contextlib.AsyncExitStack() as stack:
            for pool in sorted(set(pools)):
                await stack.enter_async_context(self.lock_for(pool))
            yield

    async def change_state(self, run_id: str, to: str, **options: Any) -> FlowRunRow:
        """Validate and record one transition (the options of `transition`), then mirror it
        in the core, under the pool's lock."""
        async with self.db.reading() as session:
            pool = (await run_store.get(session, run_id)).pool
        self.ownership.fence([pool])  # NotOwner now for a pool another replica dispatches
        async with self.lock_for(pool):
            async with self.db.transaction() as session:
                await self.ownership.check(session, pool)  # refused by the database when stale
                run = await run_store.get(session, run_id, lock=True)
                history: list[dict[str, Any]] = []
                done = self.transition(history, run, to, **options)
                await run_store.add_history(session, history)
            if done is None:
                return run
            self.dispatcher.apply(done)
        if self.events.listening:
            self.events.publish(transition_event(done))
        return run

    def forget_runs(self, runs: list[FlowRunRow], why: str) -> None:
        """Waiting runs deleted from the database: out of the core, and their watchers told."""
        now = now_utc()
        for run in runs:
            self.dispatcher.apply(run_store.Transition(run, states.SCHEDULED, states.CANCELLED))
            self.events.publish(state_event(run.id, states.CANCELLED, now, why))
        by_pool: dict[str, list[int]] = {}
        for run in runs:
            by_pool.setdefault(run.pool, []).append(run.seq)
        for pool, keys in by_pool.items():  # a pool dispatched by another replica: its core too
            self.ownership.tell_runs(pool, dropped=keys)

    def transition(
        self,
        history: list[dict[str, Any]],
        run: Any,
        to: str,
        *,
        lease: int | None = None,
        worker: str | None = None,
        force: bool = False,
        message: str = "",
        exit_code: int | None = None,
        at: datetime | None = None,
        idempotent: bool = False,
        late: bool = False,
    ) -> run_store.Transition | None:
        """Check and record one transition of a locked run (a FlowRunRow or a LiveRun); its
        line of history goes to `history`, which the caller writes in the same transaction.
        None when it is a repeat. The caller mirrors it in the core once committed, then
        publishes it (wire.transition_event) if anyone watches.

        ``late`` is the outcome of a run that ended while its worker could not reach us:
        with its lease still current and given to that very worker (a run keeps the worker
        of its last lease when it goes back to SCHEDULED), it overrides what we guessed
        meanwhile (SCHEDULED again, or CRASHED), since the worker knows how the run really
        ended. The refusal names no lease but the one the caller sent."""
        if lease is not None and (run.lease != lease or (worker is not None and run.worker != worker)):
            raise FailedPrecondition(f"lease: {lease} is stale or not this worker's for flow run {run.id!r}", field="lease")
        if lease is not None and retries.repeated(run, to):
            return None
        guessed = late and worker is not None and lease is not None and run.state in (states.SCHEDULED, states.CRASHED)
        if idempotent and run.state == to:
            return None
        states.check(run.state, to, force=force or guessed)
        moment = at or now_utc()
        if retries.due(run, to, force):
            message = retries.schedule(run, now_utc(), to, message)
            change = run_store.record(history, run, states.SCHEDULED, moment, message)
            run.state_name = retries.AWAITING_RETRY
        else:
            change = run_store.record(history, run, to, moment, message)
        if to == states.RUNNING:
            run.started = moment
            run.run_count += 1
            run.lease_expires = None
        if exit_code is not None:
            run.exit_code = exit_code
        change.exit_code = exit_code
        return change

    async def create_run(
        self,
        deployment_name: str,
        *,
        queue: str = "",
        parameters: dict[str, Any] | None = None,
        job_variables: dict[str, Any] | None = None,
        start: datetime | None = None,
        slot: str | None = None,
        idempotency_key: str = "",
        retry_policy: tuple[int | None, float | None] = (None, None),
    ) -> FlowRunDraft | FlowRunRow:
        """A new run, committed and in the core; with an idempotency key a run made already,
        the one that key made."""
        run_variables = self.check_new_run(deployment_name, idempotency_key, job_variables)
        for _ in range(MAX_CREATE_ATTEMPTS):
            deployment = await self.deployment_reader.get(deployment_name)
            try:
                run = await self.draft_run(
                    deployment, queue, parameters or {}, run_variables, start, slot, idempotency_key, retry_policy
                )
            except StaleDeployment:
                continue  # kept from before its queue was renamed: read again
            try:
                await self.inserts.add(run, deployment)
            except StaleDeployment:
                continue  # the deployment changed meanwhile: made again from what it is now
            except IntegrityError:
                if not idempotency_key:
                    raise
                return await self._made_with(idempotency_key, deployment_name)
            return run
        raise Aborted(f"deployment: {deployment_name!r} kept changing while the run was made; try again", field="deployment")

    @staticmethod
    def check_new_run(deployment_name: str, idempotency_key: str, job_variables: dict[str, Any] | None) -> dict[str, Any]:
        """What a new run's request must hold before anything is looked up; its job variables."""
        if not deployment_name:
            raise InvalidArgument("deployment: a deployment name is required", field="deployment")
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidArgument(
                f"idempotency_key: at most {MAX_IDEMPOTENCY_KEY} characters, got {len(idempotency_key)}", field="idempotency_key"
            )
        return deployments.validate_object("job_variables", job_variables or {})

    async def draft_run(
        self,
        deployment: DeploymentRow,
        queue: str,
        parameters: dict[str, Any],
        run_variables: dict[str, Any],
        start: datetime | None,
        slot: str | None,
        idempotency_key: str,
        retry_policy: tuple[int | None, float | None],
    ) -> FlowRunDraft:
        """A new run of the deployment, checked and rendered, not written yet."""
        shape = await self.run_shape(deployment, queue, run_variables)
        return self.new_draft(deployment, shape, parameters, start, slot, idempotency_key, retry_policy)

    async def _made_with(self, idempotency_key: str, deployment_name: str) -> FlowRunRow:
        """The run an earlier call with this key made (a retry of that call)."""
        async with self.db.reading() as session:
            run = await run_store.by_idempotency_key(session, idempotency_key)
        if run is None:  # the key's insert failed for another reason
            raise Aborted("idempotency_key: the run could not be made; try again", field="idempotency_key")
        if run.deployment != deployment_name:
            raise FailedPrecondition(
                f"idempotency_key: already used for a run of another deployment, not {deployment_name!r}", field="idempotency_key"
            )
        return run

    async def run_shape(self, deployment: DeploymentRow, queue: str, run_variables: dict[str, Any]) -> RunShape:
        """What every run of this deployment in this queue with these job variables shares,
        checked and rendered: its queue exists, the pool admits its entrypoint, its job
        configuration."""
        queue = queue or deployment.queue
        if queue != deployment.queue:
            try:
                await self.check_queue(deployment.pool, queue)
            except NotFound as exc:  # PoolService's answer, which names no field of ours
                raise NotFound(exc.message, field="queue") from None
        check_unsealed(run_variables)
        try:
            rendering = await self.render(deployment.pool, open_variables(self.seal, deployment.job_variables), run_variables)
        except InvalidArgument as exc:  # TemplateService's answer
            raise InvalidArgument(exc.message, field=exc.field or "job_variables") from None
        await self.ready.wait()
        if not self.dispatcher.knows_queue(deployment.pool, queue):
            if queue == deployment.queue and self.deployment_reader.kept.get(deployment.name) is deployment:
                self.deployment_reader.forget(deployment)
                raise StaleDeployment(deployment.name)
            raise NotFound(f"work queue {queue!r} not found in work pool {deployment.pool!r}", field="queue")
        await self.check_entrypoint(deployment.pool, deployment.entrypoint)
        return RunShape(
            queue,
            self.stored_variables(rendering.secret_names, run_variables),
            seal_configuration(self.seal, rendering.configuration, rendering.secrets),
        )

    def new_draft(
        self,
        deployment: DeploymentRow,
        shape: RunShape,
        parameters: dict[str, Any],
        start: datetime | None,
        slot: str | None,
        idempotency_key: str,
        retry_policy: tuple[int | None, float | None],
        created: datetime | None = None,
    ) -> FlowRunDraft:
        """One run of that shape (`created` now, unless the caller made many at one moment).
        Its documents may be shared with other runs: none is changed once made."""
        created = created or now_utc()
        run_id = new_id()
        return FlowRunDraft(
            id=run_id,
            name=run_store.run_name(),
            deployment_id=deployment.id,
            deployment=deployment.name,
            pool=deployment.pool,
            queue=shape.queue,
            entrypoint=deployment.entrypoint,
            parameters={**deployment.parameters, **parameters} if parameters else deployment.parameters,
            job_variables=shape.job_variables,
            job_configuration=shape.job_configuration,
            scheduled_start=start or created,
            state=states.SCHEDULED,
            created=created,
            slot=slot,
            idempotency_key=idempotency_key or None,
            retries=deployment.retries if retry_policy[0] is None else retry_policy[0],
            retry_delay_seconds=deployment.retry_delay_seconds if retry_policy[1] is None else retry_policy[1],
            traceparent=self.observer.caller_traceparent(slot, run_id) if self.observer else "",
        )

    def to_proto(self, run: FlowRunRow | FlowRunDraft, history: list[Any] | None = None) -> scheduler_pb2.FlowRun:
        return run_to_proto(run, now_utc(), self.settings.late_seconds, history)

    @staticmethod
    def start_time(start_in: float | None, start_at: str) -> datetime | None:
        if start_in is not None and start_at:
            raise InvalidArgument("start_at: give --start-in or --start-at, not both", field="start_at")
        if start_in is not None:
            if not 0 <= start_in <= MAX_START_IN_SECONDS:  # also refuses NaN
                raise InvalidArgument(
                    f"start_in: must be between 0 and {MAX_START_IN_SECONDS:.0f} seconds (10 years), got {start_in:g}",
                    field="start_in",
                )
            return now_utc() + timedelta(seconds=start_in)
        return Scheduler.moment("start_at", start_at)

    @staticmethod
    def moment(field: str, text: str) -> datetime | None:
        """An ISO 8601 time a request gives (UTC without an offset); None when it gives none."""
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidArgument(f"{field}: {text!r} is not an ISO 8601 time", field=field) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

    async def get_run(self, run_id: str) -> FlowRunRow:
        async with self.db.reading() as session:
            return await run_store.get(session, run_id)

    async def pool_of(self, run_id: str) -> str:
        return (await self.get_run(run_id)).pool

    # ------------------------------------------------------------ what is stored of a run, and what happens to it

    async def run_events(
        self, run_id: str, *, follow: bool, states_too: bool, logs_too: bool
    ) -> AsyncIterator[scheduler_pb2.FlowRunEvent]:
        """What is stored of a run, in time order, then (when following) what happens to it until it ends.

        The subscription starts before the read, so nothing falls in between; what both
        return is sent once."""
        subscription = self.events.subscribe(lambda event: event.run == run_id)
        try:
            async with self.db.reading() as session:
                run = await run_store.get(session, run_id)
                changes = await run_store.history(session, run) if states_too else []
                lines = await run_store.logs(session, run) if logs_too else []
        except BaseException:
            subscription.cancel()
            raise
        stored = [state_event(run.id, c.state, c.at, c.message) for c in changes]
        if stored and run.state in states.TERMINAL and run.exit_code is not None:
            stored[-1].exit_code = run.exit_code  # the history's last change is how the run ended
        stored += [log_event(run.id, run.state, line.at, line.stream, line.text) for line in lines]
        stored.sort(key=lambda e: e.at.ToNanoseconds())
        seen = {(e.kind, e.at.ToNanoseconds(), e.text) for e in stored}
        for event in stored:
            yield event
        if not follow or run.state in states.TERMINAL:
            subscription.cancel()
            return
        async for event in subscription.events():
            if (event.kind, event.at.ToNanoseconds(), event.text) in seen:
                continue
            if event.kind == "log" and logs_too or event.kind == "state" and states_too:
                yield event
            if event.kind == "state" and scheduler_pb2.RunState.Name(event.state) in states.TERMINAL:
                return

    def waterfall_order(self, pool: str, rows: list[FlowRunRow]) -> list[FlowRunRow]:
        runtime = self.dispatcher.pools.get(pool)
        rank = {name: i for i, name in enumerate(runtime.state.queues())} if runtime else {}
        return sorted(rows, key=lambda r: (rank.get(r.queue, len(rank)), r.scheduled_start, r.seq))


async def shared_key(db: Any) -> bytes:
    """The key every replica on this PostgreSQL database uses when none is configured: made
    by the first to ask, read by the others."""
    async with db.transaction() as session:
        await session.execute(
            text("INSERT INTO scheduler_keys (name, value) VALUES ('seal', :value) ON CONFLICT (name) DO NOTHING"),
            {"value": new_key_text()},
        )
        stored = (await session.execute(text("SELECT value FROM scheduler_keys WHERE name = 'seal'"))).scalar_one()
    return decode_key(stored, "scheduler_keys.seal")
