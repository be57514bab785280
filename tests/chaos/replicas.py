"""Several `shiftboss server start` processes on one PostgreSQL database (replicas), their
workers attached to different replicas, and the database's word on who owns the pool.

Builds on the fault suite's Cluster (harness.py): the same evidence-writing flow, the same
Report, counted from the files the flows leave."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from shiftboss.client import Client
from tests.chaos.harness import Cluster, free_port
from tests.e2e.conftest import ServerProcess, WorkerProcess

#: The ownership lease of the replica suite: the default, which the README's failover holds to.
REPLICA_TTL_SECONDS = 3.0


class ReplicaCluster(Cluster):
    def __init__(self, root: Path, database_url: str, replicas: int = 3, limit: int = 3, heartbeat: float = 2.0) -> None:
        super().__init__(root, database_url, limit)
        self.database_url = database_url
        self.env["SHIFTBOSS_HEARTBEAT_SECONDS"] = str(heartbeat)
        self.env["SHIFTBOSS_REPLICA_TTL_SECONDS"] = str(REPLICA_TTL_SECONDS)
        self.ports = [free_port() for _ in range(replicas)]
        self.servers: list[ServerProcess | None] = [None] * replicas

    # ------------------------------------------------------------ replicas

    def address_of(self, index: int) -> str:
        return f"127.0.0.1:{self.ports[index]}"

    def start_replica(self, index: int) -> ServerProcess:
        server = ServerProcess(self.home, self.env, ["--port", str(self.ports[index])]).start(timeout=60)
        self.servers[index] = server
        return server

    def start_server(self) -> None:
        for index in range(len(self.ports)):
            self.start_replica(index)

    def alive(self) -> list[int]:
        return [i for i, s in enumerate(self.servers) if s is not None and s.proc is not None and s.proc.poll() is None]

    @property
    def address(self) -> str:
        return self.address_of(self.alive()[0])

    def client(self, index: int | None = None) -> Client:
        return Client(self.address_of(self.alive()[0] if index is None else index), timeout=10)

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        server = self.servers[index]
        assert server is not None and server.proc is not None
        if sig == signal.SIGKILL:
            server.stop(sig)
        else:
            server.proc.send_signal(sig)

    def start_worker(self, name: str, limit: int = 4, replica: int = 0) -> WorkerProcess:  # type: ignore[override]
        env = {**self.env, "SHIFTBOSS_API_ADDRESS": self.address_of(replica), "SHIFTBOSS_WORKER_GRACE_SECONDS": "10"}
        worker = self.workers[name] = WorkerProcess(["-p", "chaos", "-n", name, "-l", str(limit)], self.project, env)
        worker.wait_for_line("connected to", timeout=60)
        return worker

    def create_runs(self, count: int) -> list[str]:
        """Runs created through every live replica in turn."""
        made: list[str] = []
        clients = [self.client(i) for i in self.alive()]
        try:
            for n in range(count):
                made.append(clients[n % len(clients)].create_flow_run("work").id)
        finally:
            for client in clients:
                client.close()
        return made

    def close(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                worker.stop(timeout=20)
        for server in self.servers:
            if server is not None and server.proc is not None:
                if server.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        server.proc.send_signal(signal.SIGCONT)  # one left stopped stops too
                server.stop()

    # ------------------------------------------------------------ the database's word

    def owner(self, pool: str = "chaos") -> int | None:
        """The replica that owns the pool now (its lease current), by index; None when none does."""
        dsn = self.database_url.replace("postgresql+asyncpg://", "postgresql://")

        async def read() -> str | None:
            connection = await asyncpg.connect(dsn)
            try:
                return await connection.fetchval(
                    "SELECT r.address FROM pool_owners o JOIN scheduler_replicas r ON r.id = o.replica "
                    "WHERE o.pool = $1 AND r.expires > now()",
                    pool,
                )
            finally:
                await connection.close()

        address = asyncio.run(read())
        if address is None:
            return None
        port = int(address.rsplit(":", 1)[1])
        return self.ports.index(port) if port in self.ports else None

    def first_dispatch_after(self, moment: float) -> float | None:
        """Seconds from `moment` (time.time()) to the first run dispatched after it."""
        dsn = self.database_url.replace("postgresql+asyncpg://", "postgresql://")

        async def read() -> float | None:
            connection = await asyncpg.connect(dsn)
            try:
                return await connection.fetchval(
                    "SELECT extract(epoch FROM min(dispatched)) FROM flow_runs WHERE dispatched > to_timestamp($1)", moment
                )
            finally:
                await connection.close()

        first = asyncio.run(read())
        return None if first is None else float(first) - moment

    def wait_for_owner(self, timeout: float, other_than: int | None = None) -> tuple[int, float]:
        """Until a replica (not `other_than`) owns the pool: which, and how long it took."""
        started = time.monotonic()
        while True:
            owner = self.owner()
            if owner is not None and owner != other_than:
                return owner, time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"no replica took work pool chaos within {timeout:g}s")
            time.sleep(0.05)


@contextlib.contextmanager
def replica_cluster(root: Path, database_url: str, replicas: int = 3, workers: int = 3, limit: int = 3) -> Iterator[ReplicaCluster]:
    made = ReplicaCluster(root, database_url, replicas, limit)
    try:
        made.start_server()
        with made.client(1 % replicas) as client:  # through a replica that is not the first
            client.create_work_pool("chaos", "process", concurrency_limit=limit)
        with made.client(2 % replicas) as client:  # a pool made through another: known here at once
            deadline = time.monotonic() + 1.0
            while True:
                try:
                    client.create_deployment(
                        "work", "chaos", "flows/chaos.py:work", parameters={"out": str(made.evidence), "seconds": 0.5}
                    )
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        for i in range(workers):
            made.start_worker(f"w{i}", replica=i % replicas)
        yield made
    finally:
        made.close()
