"""Faults made for real: a server, worker processes, flows that leave evidence, and a
private PostgreSQL that can be restarted and killed.

Everything is a real process on loopback. The flows write what they did (run id, pid,
start, end) to files, so a scenario counts what happened from that evidence, not from the
server's word: runs lost, stuck, or executed twice, the most that ever ran at once
against the pool's limit, and how long the system took to run again after the fault.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shiftboss import errors
from shiftboss.client import Client
from shiftboss.v1 import scheduler_pb2
from tests.e2e.conftest import ServerProcess, WorkerProcess, base_env

#: Heartbeats and leases short enough that every fault plays out within a scenario.
HEARTBEAT_SECONDS = 1.0
LEASE_SECONDS = 5.0
#: What the scenarios hold recovery to: three missed heartbeats and a lease.
RECOVERY_SECONDS = 3 * HEARTBEAT_SECONDS + LEASE_SECONDS
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

FLOW = textwrap.dedent(
    '''
    import os, time

    def work(out: str, seconds: float = 0.5):
        """Leave evidence of this execution: a file per (run, process), its start, its end."""
        path = os.path.join(out, f"{os.environ['SHIFTBOSS_FLOW_RUN_ID']}.{os.getpid()}")
        with open(path, "w") as fh:
            fh.write(f"{time.time()}\\n")
        time.sleep(seconds)
        with open(path, "a") as fh:
            fh.write(f"{time.time()}\\n")
    '''
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"{name} of PostgreSQL not found under /usr/lib/postgresql")
    return found[-1]


class PrivatePostgres:
    """A PostgreSQL of the scenario's own (initdb into a temporary folder, on a free port),
    run as the `postgres` user, so that it can be restarted and killed: never the shared
    server on 5432."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="shiftboss-chaos-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        shutil.chown(self.folder, "postgres", "postgres")
        self._as_postgres(_postgres_bin("initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "--no-sync")

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=120)

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(_postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "log"), "-o", options, "-w", *args)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PrivatePostgres:
        self._ctl("start")
        return self

    def restart_fast(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, the server is back in a moment."""
        self._ctl("restart", "-m", "fast")

    def stop_fast(self) -> None:
        self._ctl("stop", "-m", "fast")

    def down_for(self, seconds: float) -> None:
        """Stopped (fast) for `seconds`, then started again: an outage, not a blip."""
        self._ctl("stop", "-m", "fast")
        time.sleep(seconds)  # the outage itself
        self._ctl("start")

    def kill_postmaster(self) -> None:
        """kill -9 of the postmaster, then a start (crash recovery), as a supervisor would."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Its backends die with it (they notice the postmaster is gone); the data folder's lock
        # names a dead process, which a new start cleans up.
        self._ctl("start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Execution:
    run: str
    pid: int
    start: float
    end: float | None


@dataclass
class Report:
    scenario: str
    created: int = 0
    completed: int = 0
    lost: int = 0
    executed_twice: int = 0
    stuck: int = 0
    max_overlap: int = 0
    limit: int = 0
    recovery_seconds: float | None = None
    ended: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def row(self) -> str:
        recovered = "-" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f}"
        ends = " ".join(f"{state.lower()} {n}" for state, n in sorted(self.ended.items()))
        return (
            f"{self.scenario:<34} {self.created:>7} {self.completed:>9} {self.lost:>4} {self.executed_twice:>5} "
            f"{self.stuck:>5} {self.max_overlap:>4}/{self.limit:<3} {recovered:>8}   {ends}"
        )

    @staticmethod
    def header() -> str:
        return f"{'scenario':<34} {'created':>7} {'completed':>9} {'lost':>4} {'twice':>5} {'stuck':>5} {'overlap':>8} {'recover s':>8}   ended"

    def failures(self) -> list[str]:
        found = list(self.problems)
        if self.lost:
            found.append(f"{self.lost} runs lost")
        if self.stuck:
            found.append(f"{self.stuck} runs stuck")
        if self.executed_twice:
            found.append(f"{self.executed_twice} runs executed twice")
        if self.max_overlap > self.limit:
            found.append(f"{self.max_overlap} runs at once, over the pool's limit of {self.limit}")
        if self.recovery_seconds is not None and self.recovery_seconds > RECOVERY_SECONDS:
            found.append(f"recovered in {self.recovery_seconds:.1f} s, more than {RECOVERY_SECONDS:g} s")
        return found


class Cluster:
    """A server (on a fixed port, so that it can be restarted where workers look for it),
    its workers, a pool with a concurrency limit, and a deployment of the evidence flow."""

    def __init__(self, root: Path, database_url: str = "", limit: int = 6) -> None:
        self.root = root
        self.home = root / "home"
        self.project = root / "project"
        self.evidence = root / "evidence"
        for folder in (self.home, self.project / "flows", self.evidence):
            folder.mkdir(parents=True, exist_ok=True)
        (self.project / "flows" / "chaos.py").write_text(FLOW)
        self.limit = limit
        self.port = free_port()
        extra = {"SHIFTBOSS_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS), "SHIFTBOSS_LEASE_SECONDS": str(LEASE_SECONDS)}
        if database_url:
            extra["SHIFTBOSS_DATABASE_URL"] = database_url
        self.env = base_env(self.home, **extra)
        self.server: ServerProcess | None = None
        self.workers: dict[str, WorkerProcess] = {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_server(self) -> None:
        self.server = ServerProcess(self.home, self.env, ["--port", str(self.port)]).start(timeout=60)

    def stop_server(self, sig: int = signal.SIGTERM) -> None:
        assert self.server is not None
        self.server.stop(sig)

    def start_worker(self, name: str, limit: int = 4) -> WorkerProcess:
        env = {**self.env, "SHIFTBOSS_API_ADDRESS": self.address, "SHIFTBOSS_WORKER_GRACE_SECONDS": "10"}
        worker = self.workers[name] = WorkerProcess(["-p", "chaos", "-n", name, "-l", str(limit)], self.project, env)
        worker.wait_for_line("connected to", timeout=60)
        return worker

    def client(self) -> Client:
        return Client(self.address, timeout=10)

    def prepare(self) -> None:
        with self.client() as client:
            client.create_work_pool("chaos", "process", concurrency_limit=self.limit)
            client.create_deployment("work", "chaos", "flows/chaos.py:work", parameters={"out": str(self.evidence), "seconds": 0.5})

    def create_runs(self, count: int) -> list[str]:
        with self.client() as client:
            return [client.create_flow_run("work").id for _ in range(count)]

    def close(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                worker.stop(timeout=20)
        if self.server is not None:
            self.server.stop()

    # ------------------------------------------------------------ evidence

    def executions(self) -> list[Execution]:
        found = []
        for path in self.evidence.iterdir():
            run, _, pid = path.name.rpartition(".")
            stamps = [float(line) for line in path.read_text().split()]
            if stamps:
                found.append(Execution(run, int(pid), stamps[0], stamps[1] if len(stamps) > 1 else None))
        return found

    def states(self, runs: list[str]) -> dict[str, scheduler_pb2.FlowRun | None]:
        """Each run as the server has it now; None for a run it does not know."""
        found: dict[str, scheduler_pb2.FlowRun | None] = {}
        with self.client() as client:
            for run in runs:
                try:
                    found[run] = client.get_flow_run(run)
                except errors.NotFound:
                    found[run] = None
        return found

    def settle(self, runs: list[str], deadline_seconds: float) -> dict[str, scheduler_pb2.FlowRun | None]:
        """Wait, up to the deadline, until every run is in a final state (or unknown); the
        runs as they are then. Calls that fail while the system recovers are tried again."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                now = self.states(runs)
            except errors.ShiftbossError:
                now = None
            done = now is not None and all(r is None or _state(r) in TERMINAL for r in now.values())
            if done or time.monotonic() > deadline:
                return now if now is not None else self.states(runs)
            time.sleep(0.2)

    def report(self, scenario: str, runs: list[str], fault_at: float, over_at: float, deadline_seconds: float = 90.0) -> Report:
        """What became of `runs`, with a fault from `fault_at` until `over_at` (the process
        restarted, the database back): recovery is from then to the first execution that
        starts."""
        final = self.settle(runs, deadline_seconds)
        executions = self.executions()
        report = Report(scenario, created=len(runs), limit=self.limit)
        by_run: dict[str, list[Execution]] = {}
        for execution in executions:
            by_run.setdefault(execution.run, []).append(execution)
        for run_id, run in final.items():
            if run is None:
                report.lost += 1
                continue
            state = _state(run)
            report.ended[state] = report.ended.get(state, 0) + 1
            if state == "COMPLETED":
                report.completed += 1
                if not any(e.end is not None for e in by_run.get(run_id, [])):
                    report.lost += 1  # recorded COMPLETED, but no execution finished
            elif state not in TERMINAL:
                report.stuck += 1
            if len(by_run.get(run_id, [])) > 1:
                report.executed_twice += 1
        unknown = set(by_run) - set(runs)
        if unknown:
            report.problems.append(f"{len(unknown)} executions of runs nobody created")
        with self.client() as client:
            made = len(client.list_flow_runs(deployment="work").flow_runs)
        if made != len(runs):
            report.problems.append(f"{made} runs made for {len(runs)} creates")
        report.max_overlap = _max_overlap(executions, final)
        after = sorted(e.start for e in executions if e.start > over_at)
        report.recovery_seconds = after[0] - over_at if after else None
        if not after and any(_state(r) == "SCHEDULED" for r in final.values() if r is not None):
            report.problems.append("nothing ran after the fault")
        return report


def _state(run: scheduler_pb2.FlowRun) -> str:
    return scheduler_pb2.RunState.Name(run.state)


def _max_overlap(executions: list[Execution], final: dict[str, scheduler_pb2.FlowRun | None]) -> int:
    """The most executions that ran at once. One that never wrote its end (its process was
    killed) ran until its run reached a final state, or until now."""
    events: list[tuple[float, int]] = []
    for execution in executions:
        end = execution.end
        if end is None:
            run = final.get(execution.run)
            ended = [h.at.ToDatetime().timestamp() for h in run.history if _state_name(h.state) in TERMINAL] if run else []
            end = ended[-1] if ended else time.time()
        events += [(execution.start, 1), (end, -1)]
    most = running = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same moment
        running += step
        most = max(most, running)
    return most


def _state_name(state: int) -> str:
    return scheduler_pb2.RunState.Name(state)


@contextlib.contextmanager
def cluster(root: Path, postgres: bool, workers: int = 2) -> Iterator[Cluster]:
    database = PrivatePostgres().start() if postgres else None
    made = Cluster(root, database.url if database else "")
    made.database = database  # type: ignore[attr-defined]
    try:
        made.start_server()
        made.prepare()
        for i in range(workers):
            made.start_worker(f"w{i}")
        yield made
    finally:
        made.close()
        if database is not None:
            database.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
