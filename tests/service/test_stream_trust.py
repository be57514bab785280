"""The worker stream trusts a worker no further than its stream's identity: its pool, its
worker, and the current lease of the run a message names; everything it sends is checked
as a unary request would be. Each hole found by attacking the stream with one pool's
worker key, reproduced over a real stream on both databases, and shown closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import asyncpg
import pytest
from grpc import aio

from shiftboss._wire import to_timestamp
from shiftboss.client import AsyncClient
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from shiftboss.v1 import heartbeats_pb2, scheduler_pb2
from tests.conftest import POSTGRES_DSN, close_abandoned_connections
from tests.raw_stream import RawStream
from tests.waiting import async_wait_state

FLOW = "flows/hello.py:hello"
Worker = scheduler_pb2.WorkerMessage
Hello = scheduler_pb2.Hello


def finished(run: str, lease: int, state: int = scheduler_pb2.COMPLETED, **fields: object) -> scheduler_pb2.Finished:
    return scheduler_pb2.Finished(run=run, lease=lease, state=state, **fields)  # type: ignore[arg-type]


def state_of(run: scheduler_pb2.FlowRun) -> str:
    return scheduler_pb2.RunState.Name(run.state)


def leases_named(reason: str) -> set[str]:
    return set(re.findall(r"lease:? (\d+)", reason))


@pytest.fixture
def settings(settings: Settings) -> Settings:  # type: ignore[override]
    # Short leases, so that a run leased to a worker that went away is soon back in its queue.
    return settings.replace(lease_seconds=1.0)


@pytest.fixture
async def keys(secured: Mesh, admin: AsyncClient) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    """Pools `etl` and `ml`, a deployment in each, and a client with each pool's worker key:
    (the attacker's, holding etl's key; the victim's, holding ml's)."""
    for pool in ("etl", "ml"):
        await admin.create_work_pool(pool, "process")
        await admin.create_deployment(f"{pool}-job", pool, FLOW)
    etl = (await admin.create_api_key("etl-bot", "worker", pool="etl")).key
    ml = (await admin.create_api_key("ml-bot", "worker", pool="ml")).key
    address = secured.settings.api_address
    async with AsyncClient(address, timeout=10, api_key=etl) as attacker, AsyncClient(address, timeout=10, api_key=ml) as victim:
        yield attacker, victim


async def running_on(stream: RawStream, admin: AsyncClient, deployment: str) -> scheduler_pb2.Dispatch:
    """A new run of `deployment`, dispatched to `stream`'s worker and RUNNING there."""
    run = await admin.create_flow_run(deployment)
    dispatch = (await stream.next_of("dispatch")).dispatch
    assert dispatch.run == run.id
    stream.send(
        Worker(ack=scheduler_pb2.Ack(run=dispatch.run, lease=dispatch.lease)),
        Worker(started=scheduler_pb2.Started(run=dispatch.run, lease=dispatch.lease)),
    )
    await async_wait_state(admin, run.id, "RUNNING")
    return dispatch


async def test_a_worker_key_cannot_settle_start_or_ack_another_pools_runs(
    admin: AsyncClient, keys: tuple[AsyncClient, AsyncClient]
) -> None:
    attacker, victim = keys
    waiting = await admin.create_flow_run("ml-job", start_in=3600)  # SCHEDULED, never leased
    holder = RawStream(victim, Hello(name="ml-w", pool="ml", limit=1))
    await holder.next_of("welcome")
    running = await running_on(holder, admin, "ml-job")
    # A run leased once and back in its queue: its worker went away before starting it.
    bounced = await admin.create_flow_run("ml-job")
    gone = RawStream(victim, Hello(name="ml-gone", pool="ml"))
    first = (await gone.next_of("dispatch")).dispatch
    assert first.run == bounced.id
    await gone.close()
    await async_wait_state(admin, bounced.id, "SCHEDULED")
    ghost = str(uuid.uuid4())

    # The late-outcome path: outcomes carried by a Hello, each as forged as can be.
    forged = [
        finished(waiting.id, 1),
        finished(running.run, running.lease),
        finished(bounced.id, first.lease, scheduler_pb2.CANCELLED),
        finished(ghost, 1),
        finished(waiting.id, 0),
    ]
    intruder = RawStream(attacker, Hello(name="etl-w", pool="etl", finished=forged))
    await intruder.next_of("welcome")
    answers = await intruder.answers(len(forged))
    assert [a.WhichOneof("kind") for a in answers] == ["refused"] * len(forged)
    by_item = {(a.refused.run, a.refused.lease): a.refused.reason for a in answers}
    reasons = [by_item[(f.run, f.lease)] for f in forged]
    # Another pool's run reads exactly like a run that does not exist.
    assert reasons[0].replace(waiting.id, "?") == reasons[3].replace(ghost, "?")
    assert reasons[1] == f"lease: {running.lease} is stale or not this worker's for flow run {running.run!r}"
    assert reasons[4] == "lease: 0 is not the lease of a Dispatch"

    # The live stream: Started with lease 0 once answered with the current lease.
    intruder.send(
        Worker(started=scheduler_pb2.Started(run=running.run, lease=0)),
        Worker(started=scheduler_pb2.Started(run=running.run, lease=running.lease)),
        Worker(ack=scheduler_pb2.Ack(run=bounced.id, lease=first.lease)),
        Worker(finished=finished(running.run, running.lease, scheduler_pb2.CANCELLED)),
        Worker(finished=finished(waiting.id, 1)),
    )
    live = await intruder.answers(5)
    sent = [0, running.lease, first.lease, running.lease, 1]
    for answer, lease in zip(live, sent):
        assert answer.WhichOneof("kind") == "refused" and answer.refused.lease == lease
        reasons.append(answer.refused.reason)
    for reason, lease in zip(reasons, [1, running.lease, first.lease, 1, 0, *sent]):
        assert leases_named(reason) <= {str(lease)}, reason  # no lease but the one sent
        assert "'ml'" not in reason and "ml/" not in reason, reason  # no other pool's name
    await intruder.close()

    assert [state_of(await admin.get_flow_run(r)) for r in (waiting.id, running.run, bounced.id)] == [
        "SCHEDULED", "RUNNING", "SCHEDULED"
    ]
    assert [state_of(h) for h in (await admin.get_flow_run(waiting.id)).history] == ["SCHEDULED"]
    # The run's own worker still ends it.
    holder.send(Worker(finished=finished(running.run, running.lease, exit_code=0)))
    settled = await holder.next_of("settled")
    assert (settled.settled.run, settled.settled.lease) == (running.run, running.lease)
    done = await async_wait_state(admin, running.run, "COMPLETED")
    assert done.worker == "ml-w" and done.exit_code == 0
    await holder.close()


async def test_a_run_leased_to_another_worker_of_the_same_pool_is_left_alone(
    admin: AsyncClient, keys: tuple[AsyncClient, AsyncClient]
) -> None:
    attacker, _ = keys
    holder = RawStream(attacker, Hello(name="w1", pool="etl", limit=1))
    await holder.next_of("welcome")
    dispatch = await running_on(holder, admin, "etl-job")
    other = RawStream(attacker, Hello(name="w2", pool="etl", finished=[finished(dispatch.run, dispatch.lease)]))
    await other.next_of("welcome")
    assert (await other.next_of("refused")).refused.run == dispatch.run
    other.send(Worker(finished=finished(dispatch.run, dispatch.lease, scheduler_pb2.FAILED)))
    assert "not this worker's" in (await other.next_of("refused")).refused.reason
    run = await admin.get_flow_run(dispatch.run)
    assert (state_of(run), run.worker) == ("RUNNING", "w1")
    await other.close()
    await holder.close()


@pytest.mark.parametrize(
    ("hello", "error"),
    [
        (Hello(name="x" * 300, pool="etl"), "name: 300 characters is longer than the limit of 255"),
        (Hello(name="w\nINFO worker admin connected", pool="etl"), "name: 'w\\nINFO worker admin connected' contains '\\n'"),
        (Hello(name="w", pool="etl", queues=[f"q{i}" for i in range(101)]), "queues: 101 queues is more than the 100"),
        (Hello(name="w", pool="etl", queues=["a/b"]), "queues[0]: 'a/b' contains '/'"),
        (Hello(name="w", pool="etl", prefetch_seconds=float("nan")), "prefetch_seconds: must be between 0 and"),
        (Hello(name="w", pool="etl", type="p" * 65), "type: 65 characters is longer than the limit of 64"),
        (Hello(name="w", pool="etl", holding={"r" * 10: 1} | {str(i): 1 for i in range(10_001)}), "holding: 10002 runs"),
    ],
    ids=["long-name", "newline", "too-many-queues", "bad-queue", "nan-prefetch", "long-type", "holding"],
)
async def test_a_bad_hello_is_refused_and_other_pools_workers_keep_beating(
    admin: AsyncClient, keys: tuple[AsyncClient, AsyncClient], hello: scheduler_pb2.Hello, error: str
) -> None:
    attacker, victim = keys
    holder = RawStream(victim, Hello(name="ml-w", pool="ml"))
    await holder.next_of("welcome")
    dispatch = await running_on(holder, admin, "ml-job")
    before = (await admin.get_worker("ml-w", "ml")).last_heartbeat.ToDatetime()

    bad = RawStream(attacker, hello)
    with pytest.raises(aio.AioRpcError) as caught:
        await bad.read()
    assert caught.value.code().name == "INVALID_ARGUMENT" and error in caught.value.details()
    await bad.close()

    # The victim's beats are still recorded (a Hello flushes them) and its run goes on.
    holder.send(Worker(heartbeat=scheduler_pb2.Heartbeat()))
    await barrier(holder)
    fine = RawStream(attacker, Hello(name="etl-w", pool="etl"))
    await fine.next_of("welcome")
    beaten = await admin.get_worker("ml-w", "ml")
    assert heartbeats_pb2.WorkerStatus.Name(beaten.status) == "ONLINE" and beaten.last_heartbeat.ToDatetime() > before
    assert state_of(await admin.get_flow_run(dispatch.run)) == "RUNNING"
    await fine.close()
    await holder.close()


async def test_malformed_reports_are_refused_one_by_one_and_never_unknown(
    admin: AsyncClient, keys: tuple[AsyncClient, AsyncClient]
) -> None:
    attacker, _ = keys
    stream = RawStream(attacker, Hello(name="w", pool="etl", finished=[finished(str(uuid.uuid4()), 1, 42)]))
    await stream.next_of("welcome")
    undefined = (await stream.next_of("refused")).refused
    assert undefined.reason == "state: a finished run is COMPLETED, FAILED, CRASHED or CANCELLED, not 42"
    dispatch = await running_on(stream, admin, "etl-job")
    far = to_timestamp(datetime(9999, 1, 1, tzinfo=timezone.utc))
    far.seconds += 10**9
    stream.send(
        Worker(finished=finished(dispatch.run, dispatch.lease, message="bad\x00message")),
        Worker(finished=finished(dispatch.run, dispatch.lease, scheduler_pb2.RUNNING)),
        Worker(started=scheduler_pb2.Started(run="'; DROP TABLE flow_runs; --", lease=1)),
        Worker(started=scheduler_pb2.Started(run=dispatch.run, lease=dispatch.lease, at=far)),
        Worker(ack=scheduler_pb2.Ack(run=dispatch.run, lease=2**40)),
        Worker(finished=finished(dispatch.run, dispatch.lease, message="x" * 70_000)),
    )
    reasons = [a.refused.reason for a in await stream.answers(6)]
    assert reasons == [
        "message: holds a NUL character",
        "state: a finished run is COMPLETED, FAILED, CRASHED or CANCELLED, not RUNNING",
        "run: \"'; DROP TABLE flow_runs; --\" is not a flow run id",
        "at: not a valid time",
        f"lease: {2**40} is not the lease of a Dispatch",
        "message: 70000 characters is longer than the limit of 65536",
    ]
    # A well-formed report after all that is recorded as ever.
    stream.send(Worker(finished=finished(dispatch.run, dispatch.lease, exit_code=0)))
    assert (await stream.next_of("settled")).settled.run == dispatch.run
    await stream.close()


@contextlib.asynccontextmanager
async def writes_held(db_url: str, run_id: str) -> AsyncIterator[None]:
    """Hold the run's row (PostgreSQL) or the whole file (SQLite) locked from another
    connection: the scheduler's next write of that run waits, and what reaches it meanwhile
    queues up for the batch after."""
    if db_url.startswith("sqlite"):
        connection = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("COMMIT")
            connection.close()
        return
    connection = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("SELECT 1 FROM flow_runs WHERE id = $1 FOR UPDATE", run_id)
        try:
            yield
        finally:
            await transaction.commit()
    finally:
        await connection.close()


async def barrier(stream: RawStream) -> list[scheduler_pb2.SchedulerMessage]:
    """Wait until every message sent before is in the scheduler's hands (a malformed Ack is
    refused at once, and a stream's messages are handled in order); the answers that came
    meanwhile."""
    stream.send(Worker(ack=scheduler_pb2.Ack(run="barrier", lease=0)))
    seen = []
    while (message := await stream.read()).WhichOneof("kind") != "refused" or message.refused.run != "barrier":
        if message.WhichOneof("kind") in ("settled", "refused"):
            seen.append(message)
    return seen


async def test_a_poisoned_report_in_a_batch_with_other_pools_is_refused_alone(
    client: AsyncClient, db_url: str
) -> None:
    for pool in ("etl", "ml"):
        await client.create_work_pool(pool, "process")
        await client.create_deployment(f"{pool}-job", pool, FLOW)
    etl = RawStream(client, Hello(name="a", pool="etl", limit=2))
    ml = RawStream(client, Hello(name="b", pool="ml", limit=1))
    await etl.next_of("welcome")
    await ml.next_of("welcome")
    first, second = [await running_on(etl, client, "etl-job") for _ in range(2)]
    theirs = await running_on(ml, client, "ml-job")

    ghost = str(uuid.uuid4())
    async with writes_held(db_url, first.run):
        etl.send(Worker(finished=finished(first.run, first.lease, exit_code=0)))  # its batch waits on the lock
        seen = await barrier(etl)
        # All of these queue up together behind it: one batch, two pools, poison in between.
        etl.send(
            Worker(finished=finished(theirs.run, theirs.lease, scheduler_pb2.FAILED)),
            Worker(finished=finished(theirs.run, theirs.lease, 42)),
            Worker(finished=finished(second.run, second.lease, exit_code=0, message="\x00")),
            Worker(finished=finished(second.run, second.lease, exit_code=0)),
            Worker(finished=finished(ghost, 1)),
        )
        ml.send(Worker(finished=finished(theirs.run, theirs.lease, exit_code=0)))
        seen += await barrier(etl)
        assert await barrier(ml) == []
    seen += await etl.answers(6 - len(seen))
    answers = {(a.WhichOneof("kind"), getattr(a, a.WhichOneof("kind")).run, a.refused.reason[:6]) for a in seen}
    assert answers == {
        ("settled", first.run, ""), ("settled", second.run, ""), ("refused", ghost, "lease:"),
        ("refused", theirs.run, "lease:"), ("refused", theirs.run, "state:"), ("refused", second.run, "messag"),
    }
    assert (await ml.next_of("settled")).settled.run == theirs.run
    for run, worker in ((first.run, "a"), (second.run, "a"), (theirs.run, "b")):
        done = await async_wait_state(client, run, "COMPLETED")
        assert (done.worker, done.exit_code) == (worker, 0)
    await etl.close()
    await ml.close()


async def test_a_poisoned_beat_is_refused_alone_and_the_others_recorded(client: AsyncClient) -> None:
    now = to_timestamp(datetime.now(timezone.utc))
    beats = [
        heartbeats_pb2.WorkerBeat(name="a1", pool="etl", heartbeat_seconds=30, at=now),
        heartbeats_pb2.WorkerBeat(name="x" * 300, pool="etl", heartbeat_seconds=30, at=now),
        heartbeats_pb2.WorkerBeat(name="b1", pool="ml", heartbeat_seconds=30, at=now),
        heartbeats_pb2.WorkerBeat(name="b2", pool="ml", heartbeat_seconds=0, at=now),
        heartbeats_pb2.WorkerBeat(name="b3", pool="ml", type="t" * 65, heartbeat_seconds=30, at=now),
    ]
    reply = await client._invoke("HeartbeatService", "Beat", heartbeats_pb2.BeatRequest(beats=beats))
    assert [(r.index, r.reason.split(":")[0]) for r in reply.refused] == [
        (1, "beats.name"), (3, "beats.heartbeat_seconds"), (4, "beats.type")
    ]
    online = {(w.pool, w.name) for w in (await client.list_workers()).workers if w.status == heartbeats_pb2.ONLINE}
    assert online == {("etl", "a1"), ("ml", "b1")}


async def test_worker_keys_serve_existing_queues_unless_the_pool_lets_them_add_some(
    admin: AsyncClient, keys: tuple[AsyncClient, AsyncClient]
) -> None:
    attacker, _ = keys
    await admin.create_work_queue("secret", "ml")

    async def hello_error(*queues: str) -> tuple[str, str]:
        stream = RawStream(attacker, Hello(name="w", pool="etl", queues=list(queues)))
        try:
            with pytest.raises(aio.AioRpcError) as caught:
                await stream.read()
        finally:
            await stream.close()
        return caught.value.code().name, caught.value.details()

    code, message = await hello_error("secret")
    assert code == "NOT_FOUND"
    assert message == (
        "queues: work queue 'secret' not found in work pool 'etl'; worker key 'etl-bot' serves existing queues only "
        "(an admin lets workers add queues: work-pool update etl --worker-queue-limit N)"
    )
    assert "ml" not in message  # a queue of another pool is not confirmed
    assert [q.name for q in (await admin.list_work_queues("etl")).work_queues] == ["default"]

    await admin.update_work_pool("etl", worker_queue_limit=3)
    assert (await admin.get_work_pool("etl")).worker_queue_limit == 3
    stream = RawStream(attacker, Hello(name="w", pool="etl", queues=["nightly", "hourly", "nightly"]))
    welcome = (await stream.next_of("welcome")).welcome
    assert list(welcome.queues) == ["nightly", "hourly"]
    await stream.close()
    code, message = await hello_error("weekly")
    assert code == "FAILED_PRECONDITION" and "worker keys may add queues only up to 3" in message
    assert [(q.name, q.priority) for q in (await admin.list_work_queues("etl")).work_queues] == [
        ("default", 1), ("nightly", 2), ("hourly", 3)
    ]


async def test_the_stream_must_begin_with_hello_in_time(settings: Settings) -> None:
    mesh = Mesh(settings.replace(port=0, host="127.0.0.1", hello_timeout_seconds=0.3))
    port = await mesh.start()
    try:
        async with AsyncClient(f"127.0.0.1:{port}", timeout=10) as client:
            silent = RawStream(client, None)
            with pytest.raises(aio.AioRpcError) as caught:
                await silent.read()
            assert caught.value.code().name == "DEADLINE_EXCEEDED"
            assert caught.value.details() == "hello: no Hello within 0.3s of opening the stream"
            await silent.close()
    finally:
        await mesh.stop(0)
        await close_abandoned_connections()


async def test_a_report_the_database_cannot_take_now_is_written_again_not_refused(
    settings: Settings, backend: str, db_url: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite waits out a lock for its busy timeout; PostgreSQL gives up after lock_timeout")
    database = db_url.rsplit("/", 1)[1]
    owner = await asyncpg.connect(POSTGRES_DSN)
    try:  # every connection of the scheduler gives up waiting for a row lock after 200 ms
        await owner.execute(f"ALTER DATABASE \"{database}\" SET lock_timeout = '200ms'")
    finally:
        await owner.close()
    failed = asyncio.Event()

    class Failures(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "not written" in record.getMessage():
                failed.set()

    watcher = Failures()
    logging.getLogger("shiftboss.scheduler").addHandler(watcher)
    mesh = Mesh(settings.replace(port=0, host="127.0.0.1"))
    port = await mesh.start()
    try:
        async with AsyncClient(f"127.0.0.1:{port}", timeout=10) as client:
            await client.create_work_pool("etl", "process")
            await client.create_deployment("etl-job", "etl", FLOW)
            stream = RawStream(client, Hello(name="w", pool="etl"))
            await stream.next_of("welcome")
            dispatch = await running_on(stream, client, "etl-job")
            async with writes_held(db_url, dispatch.run):
                stream.send(Worker(finished=finished(dispatch.run, dispatch.lease, exit_code=0)))
                await asyncio.wait_for(failed.wait(), 10)  # the batch, then the report alone, gave up
            # Not refused, not lost: written again by the scheduler once the database takes it.
            answer = await stream.read()
            assert answer.WhichOneof("kind") == "settled" and answer.settled.run == dispatch.run
            assert (await async_wait_state(client, dispatch.run, "COMPLETED")).exit_code == 0
            await stream.close()
    finally:
        logging.getLogger("shiftboss.scheduler").removeHandler(watcher)
        await mesh.stop(0)
        await close_abandoned_connections()
