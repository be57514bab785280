"""Random and malformed worker streams from one pool's worker key, against a real server
process with --auth, while a real worker of a second pool runs that pool's runs: no answer
is UNKNOWN or INTERNAL, the server keeps serving, and the second pool's runs, workers and
queues are exactly as its own worker and the operator made them."""

from __future__ import annotations

import math
import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shiftboss.client import Client
from shiftboss.v1 import heartbeats_pb2, scheduler_pb2
from tests.e2e.conftest import BIN, ServerProcess, WorkerProcess, base_env
from tests.waiting import wait_state

CONNECT = "/shiftboss.v1.SchedulerService/Connect"
REFUSED_AS_BUGS = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}
W = scheduler_pb2.WorkerMessage
FLOW = "flows/noop.py:noop"
#: Runs of the victim's pool created before the fuzz, and while it goes (one per example).
BEFORE = 4
#: Runs of the victim's pool due long after the test: targets that must stay SCHEDULED.
TARGETS = 3


class Scene:
    def __init__(self, server: ServerProcess, admin: Client, attacker_key: str, victim: WorkerProcess) -> None:
        self.server = server
        self.admin = admin
        self.attacker_key = attacker_key
        self.victim = victim
        self.done: list[str] = []
        self.targets: list[str] = []
        self.during: list[str] = []
        self.etl: list[str] = []


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    home = tmp_path_factory.mktemp("stream-fuzz-home")
    env = base_env(home)
    made = subprocess.run([str(BIN), "server", "create-admin-key", "root"], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    root = made.stdout.strip().splitlines()[-1]
    server = ServerProcess(home, env, args=["--auth"]).start()
    victim = None
    try:
        with Client(server.address, timeout=10, api_key=root) as admin:
            admin.create_work_pool("etl", "process")
            admin.create_work_pool("ml", "noop")
            admin.create_deployment("etl-job", "etl", FLOW)
            admin.create_deployment("ml-job", "ml", FLOW)
            attacker_key = admin.create_api_key("etl-bot", "worker", pool="etl").key
            victim_key = admin.create_api_key("ml-bot", "worker", pool="ml").key
            project = tmp_path_factory.mktemp("victim")
            victim_env = {**env, "SHIFTBOSS_API_ADDRESS": server.address, "SHIFTBOSS_API_KEY": victim_key}
            victim = WorkerProcess(["-p", "ml", "-n", "ml-worker"], project, victim_env)
            victim.wait_for_line("connected to")
            scene = Scene(server, admin, attacker_key, victim)
            scene.done = [admin.create_flow_run("ml-job").id for _ in range(BEFORE)]
            for run in scene.done:
                wait_state(admin, run, "COMPLETED")
            scene.targets = [admin.create_flow_run("ml-job", start_in=86_400).id for _ in range(TARGETS)]
            scene.etl = [admin.create_flow_run("etl-job").id for _ in range(3)]
            yield scene
    finally:
        if victim is not None:
            victim.stop()
        server.stop()


def stamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


def worker_messages(run_ids: list[str]) -> st.SearchStrategy[scheduler_pb2.WorkerMessage]:
    """Any message a worker may send, mostly naming real runs of both pools, with leases
    worth guessing and fields as bad as they come."""
    run = st.one_of(st.sampled_from(run_ids), st.just(str(uuid.uuid4())), st.text(max_size=40), st.just("r" * 100))
    lease = st.sampled_from([0, 1, 1, 2, 3, -1, 2**31, 2**40])
    state = st.integers(0, 12)
    text = st.one_of(st.text(max_size=30), st.just("a\x00b"), st.just("y" * 70_000))
    at = st.one_of(st.none(), st.integers(-62_135_596_810, 253_402_300_810).map(stamp))

    def report(kind: str) -> st.SearchStrategy[Any]:
        cls = {"ack": scheduler_pb2.Ack, "started": scheduler_pb2.Started, "finished": scheduler_pb2.Finished}[kind]
        fields: dict[str, st.SearchStrategy[Any]] = {"run": run, "lease": lease}
        if kind != "ack":
            fields["at"] = at
        if kind == "finished":
            fields.update(state=state, message=text, exit_code=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)))
        return st.fixed_dictionaries(fields).map(lambda f: cls(**{k: v for k, v in f.items() if v is not None}))

    finished = report("finished")
    line = st.fixed_dictionaries(
        {"run": run, "stream": st.sampled_from(["stdout", "stderr", "", "s" * 20]), "text": text, "at": at}
    ).map(lambda f: scheduler_pb2.LogLine(**{k: v for k, v in f.items() if v is not None}))
    single = st.one_of(
        report("ack").map(lambda m: W(ack=m)),
        report("started").map(lambda m: W(started=m)),
        finished.map(lambda m: W(finished=m)),
        st.integers(-5, 2**31 - 1).map(lambda n: W(credits=scheduler_pb2.Credits(free=n))),
        st.lists(line, max_size=3).map(lambda lines: W(logs=scheduler_pb2.LogBatch(lines=lines))),
        st.just(W(heartbeat=scheduler_pb2.Heartbeat())),
    )
    hello = st.builds(
        scheduler_pb2.Hello,
        name=st.one_of(st.just("fz"), st.text(max_size=20), st.just("n" * 300), st.just("a\nb")),
        pool=st.sampled_from(["etl", "etl", "etl", "ml", "nope", ""]),
        queues=st.one_of(st.lists(st.sampled_from(["default", "q1", "a/b", ""]), max_size=3), st.just([f"q{i}" for i in range(150)])),
        type=st.sampled_from(["", "process", "noop", "t" * 70]),
        limit=st.integers(-1, 5),
        prefetch_seconds=st.sampled_from([0.0, 5.0, -1.0, math.nan, math.inf, 1e9]),
        holding=st.dictionaries(run, lease, max_size=3),
        finished=st.lists(finished, max_size=4),
        once=st.booleans(),
        batches=st.booleans(),
    )
    nested = st.lists(st.one_of(single, single, hello.map(lambda h: W(hello=h)), st.just(W(batch=scheduler_pb2.WorkerBatch()))), max_size=4)
    return st.one_of(single, single, single, nested.map(lambda ms: W(batch=scheduler_pb2.WorkerBatch(messages=ms))), hello.map(lambda h: W(hello=h)))


def hellos(run_ids: list[str]) -> st.SearchStrategy[scheduler_pb2.WorkerMessage]:
    """A first message: mostly a Hello that may pass, carrying forged outcomes and claims."""
    lease = st.sampled_from([0, 1, 1, 2])
    forged = st.builds(
        scheduler_pb2.Finished, run=st.sampled_from(run_ids), lease=lease, state=st.sampled_from([5, 6, 7, 9, 5, 6, 7, 9, 42])
    )
    good = st.builds(
        scheduler_pb2.Hello, name=st.sampled_from(["fz", "fz2"]), pool=st.just("etl"),
        queues=st.lists(st.sampled_from(["default", "q1"]), max_size=2),
        holding=st.dictionaries(st.sampled_from(run_ids), lease, max_size=3), finished=st.lists(forged, min_size=1, max_size=6),
        batches=st.booleans(), limit=st.integers(0, 2),
    ).map(lambda h: W(hello=h))
    return st.one_of(good, good, good, worker_messages(run_ids))


def stream_once(channel: grpc.Channel, key: str, messages: list[scheduler_pb2.WorkerMessage]) -> tuple[grpc.StatusCode, list[Any]]:
    call = channel.stream_stream(CONNECT, request_serializer=W.SerializeToString, response_deserializer=scheduler_pb2.SchedulerMessage.FromString)
    replies = []
    try:
        for reply in call(iter(messages), metadata=(("authorization", f"Bearer {key}"),), timeout=20):
            replies.append(reply)
    except grpc.RpcError as exc:
        return exc.code(), replies
    return grpc.StatusCode.OK, replies


def test_random_worker_streams_of_one_pool_leave_another_pool_alone(scene: Scene) -> None:
    admin = scene.admin
    run_ids = scene.done + scene.targets + scene.etl
    codes: dict[str, int] = {}
    channel = grpc.insecure_channel(scene.server.address, options=[("grpc.max_send_message_length", 64 << 20)])

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(hellos(run_ids), st.lists(worker_messages(run_ids), max_size=8))
    def attack(first: scheduler_pb2.WorkerMessage, rest: list[scheduler_pb2.WorkerMessage]) -> None:
        scene.during.append(admin.create_flow_run("ml-job").id)  # the victim's pool keeps working meanwhile
        code, replies = stream_once(channel, scene.attacker_key, [first, *rest])
        codes[code.name] = codes.get(code.name, 0) + 1
        assert code not in REFUSED_AS_BUGS, f"{code.name} for {first} {rest}"
        for reply in replies:
            inner = reply.batch.messages if reply.WhichOneof("kind") == "batch" else [reply]
            for message in inner:
                kind = message.WhichOneof("kind")
                if kind == "refused":
                    reason = message.refused.reason
                    assert "ml/" not in reason and "'ml'" not in reason and "current lease" not in reason, reason
                    assert set(re.findall(r"lease:? (\d+)", reason)) <= {str(message.refused.lease)}, reason
                if kind == "dispatch":
                    assert message.dispatch.run not in set(scene.done + scene.targets + scene.during)

    try:
        attack()
    finally:
        channel.close()
    assert codes.get("OK", 0) > 0 and len(codes) > 1, codes  # both streams that went on and ones refused

    # The server serves, and the victim's pool is exactly as its own worker and the operator left it.
    with grpc.insecure_channel(scene.server.address) as plain:
        health = health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    lived = ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
    for run_id in scene.done + scene.during:
        run = wait_state(admin, run_id, "COMPLETED")
        assert (run.worker, run.exit_code) == ("ml-worker", 0), run
        assert [scheduler_pb2.RunState.Name(h.state) for h in run.history] == lived, run
    for run_id in scene.targets:
        run = admin.get_flow_run(run_id)
        assert [scheduler_pb2.RunState.Name(h.state) for h in run.history] == ["SCHEDULED"], run
    workers = admin.list_workers("ml").workers
    assert [(w.name, heartbeats_pb2.WorkerStatus.Name(w.status)) for w in workers] == [("ml-worker", "ONLINE")]
    assert [q.name for q in admin.list_work_queues("ml").work_queues] == ["default"]
    assert [q.name for q in admin.list_work_queues("etl").work_queues] == ["default"]  # worker keys add none
    assert "Traceback" not in "".join(scene.server.lines), "".join(scene.server.lines)[-3000:]
