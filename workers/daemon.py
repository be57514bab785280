"""`shiftboss worker start`: one stream to the scheduler, and the runs it pushes.

One asyncio task group: the stream reader, a heartbeat, a log flusher, and one task per
run. The stream reconnects with jittered backoff while runs keep going. Every outcome is
kept until the scheduler answers it with Settled, or Refused (which sending it again would
not change): it is sent again on the same stream with backoff (a write that failed on the
scheduler's side gets no answer) and in the next Hello (the scheduler ignores repeats);
none is dropped unanswered. A Drain belongs to the stream it came on: a new stream offers
every free slot again. SIGTERM or Ctrl-C drains: no new runs, in-flight ones get a grace
period, then whatever remains is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from rich.console import Console

from shiftboss._json_logs import JsonConsole
from shiftboss._wire import from_struct, from_timestamp, to_timestamp
from shiftboss.client import AsyncClient
from shiftboss.errors import ShiftbossError, Unavailable
from shiftboss.stream import Redirected, SchedulerSilent, WorkerStream
from shiftboss.telemetry import current_traceparent
from shiftboss.v1 import scheduler_pb2
from shiftboss.workers.health import HealthServer, stream_health
from shiftboss.workers.infrastructure import Handle, Infrastructure, RunSpec, SharedEnvironment, backend_for
from shiftboss.workers.placeholders import fill_environment
from shiftboss.workers.telemetry import WorkerTelemetry

Worker = scheduler_pb2.WorkerMessage
#: Seconds before an outcome with no answer is sent again on the same stream, doubling up
#: to the most.
#: (The first wait is long enough that a busy scheduler answering late is not sent the
#: same outcomes again.)
RESEND_FIRST_SECONDS, RESEND_MOST_SECONDS = 5.0, 30.0
LOG_FLUSH_SECONDS = 0.2
#: Longest wait for the scheduler's Welcome: a server that accepts the connection but does
#: not answer (stopped, paused) is left for another replica, or tried again.
WELCOME_SECONDS = 10.0
LOG_BATCH_LINES = 200
#: What a secret value of a run reads as in its logs.
MASK = "********"
#: Longest text the scheduler takes in an outcome's message or a log line.
MAX_TEXT = 65_536


def sendable(text: str) -> str:
    """Text as the scheduler takes it: no NUL (no database stores one), at most MAX_TEXT
    characters. A flow's output may hold either; its outcome must not be refused for it."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


@dataclass(slots=True)
class Options:
    pool: str
    name: str
    queues: list[str]
    type: str = ""
    limit: int = 0
    prefetch_seconds: float = 10.0
    run_once: bool = False
    base_job_template: dict[str, Any] | None = None
    address: str = "127.0.0.1:4300"
    grace_seconds: float = 30.0
    connect_timeout: float = 60.0
    #: (host, port) of the health endpoint; None: no endpoint.
    healthcheck: tuple[str, int] | None = None
    healthcheck_down_seconds: float = 90.0
    #: Modules and folders whose flows run beyond the working directory ('*': any).
    allowed_entrypoints: list[str] = field(default_factory=list)
    #: Whether a job configuration may choose the command that runs a flow.
    allow_command: bool = False
    #: Fork the process backend's runs from a fork server that imported the launcher and
    #: these modules once (warm starts); False: a new Python per run.
    warm_start: bool = True
    preload: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Run:
    dispatch: scheduler_pb2.Dispatch
    task: asyncio.Task[None] | None = None
    handle: Handle | None = None
    cancelled: bool = False
    started_at: float = 0.0


@dataclass
class Daemon:
    options: Options
    console: Console = field(default_factory=lambda: Console(highlight=False))
    #: The console is no terminal: lines are written as they are (see `say`); None until known.
    plain: bool | None = None
    flush_pending: bool = False
    #: The second the console's last time stamp was made for, and that stamp.
    stamped: tuple[int, str] = (0, "")
    runs: dict[str, Run] = field(default_factory=dict)
    unconfirmed: dict[str, scheduler_pb2.WorkerMessage] = field(default_factory=dict)
    logs: list[scheduler_pb2.LogLine] = field(default_factory=list)
    stream: WorkerStream | None = None
    infrastructure: Infrastructure | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    run_ended: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set while every outcome this worker reported has been recorded by the scheduler.
    all_settled: asyncio.Event = field(default_factory=asyncio.Event)
    drained: bool = False
    heartbeat_seconds: float = 30.0
    connected_since: float | None = None
    established: bool = False
    ever_connected: bool = False
    disconnected_since: float | None = field(default_factory=time.monotonic)
    #: A span per run and a count of reconnects; None when telemetry is off.
    telemetry: WorkerTelemetry | None = None
    looked_for_leftovers: bool = False
    #: Other scheduler replicas the server named, tried when the configured one is down.
    replicas: list[str] = field(default_factory=list)
    #: A client per replica this worker connected to (the configured one first).
    clients: dict[str, AsyncClient] = field(default_factory=dict)
    #: Where a Redirect on an open stream sent us: the next connection goes there.
    moved_to: str | None = None

    # ------------------------------------------------------------ console

    def say(self, text: str, style: str = "") -> None:
        if isinstance(self.console, JsonConsole):  # its lines carry their own time
            self.console.print(text, style=style or None)
            return
        second = int(time.time())
        if second != self.stamped[0]:  # one strftime a second, not one a line
            self.stamped = (second, datetime.now().strftime("%H:%M:%S"))
        stamp = self.stamped[1]
        if self.plain is None:
            self.plain = isinstance(self.console, Console) and not self.console.is_terminal
        if self.plain:  # a pipe or a file: no colour and no wrapping, so none of rich's rendering per line
            self.console.file.write(f"{stamp} {text}\n")
            self._flush_soon()
            return
        self.console.print(f"{stamp} {text}", style=style or None, markup=False)

    def _flush_soon(self) -> None:
        """Flush the console once this turn of the event loop is over: the lines of every
        run it started or ended leave in one write."""
        if self.flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.console.file.flush()
            return
        self.flush_pending = True
        loop.call_soon(self._flush_console)

    def _flush_console(self) -> None:
        self.flush_pending = False
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nobody reads the console
            self.console.file.flush()

    # ------------------------------------------------------------ sending

    def send(self, message: scheduler_pb2.WorkerMessage) -> None:
        if self.stream is not None:
            self.stream.send(message)

    def report(self, run: Run, state: str, exit_code: int | None, message: str) -> None:
        finished = scheduler_pb2.Finished(
            run=run.dispatch.run,
            lease=run.dispatch.lease,
            state=scheduler_pb2.RunState.Value(state),
            message=sendable(message),
            at=to_timestamp(datetime.now(timezone.utc)),
        )
        if exit_code is not None:
            finished.exit_code = exit_code
        outcome = Worker(finished=finished)
        self.unconfirmed[run.dispatch.run] = outcome
        self.all_settled.clear()
        self.flush_logs()
        self.send(outcome)
        self.runs.pop(run.dispatch.run, None)
        self.run_ended.set()
        took = time.monotonic() - run.started_at if run.started_at else 0.0
        style = {"COMPLETED": "green", "CANCELLED": "yellow"}.get(state, "red")
        shown = message if len(message) <= 500 else message[:499] + "…"  # a console line, not the record
        self.say(f"run {run.dispatch.name} ({run.dispatch.run[:8]}) finished {state} in {took:.2f}s" + (f": {shown}" if shown else ""), style)
        self.send_credits()

    def _outcome(self, run_id: str) -> scheduler_pb2.Finished | None:
        outcome = self.unconfirmed.get(run_id)
        return outcome.finished if outcome is not None else None

    def forget_outcome(self, run_id: str, lease: int) -> None:
        outcome = self.unconfirmed.get(run_id)
        if outcome is not None and outcome.finished.lease == lease:
            del self.unconfirmed[run_id]
        if not self.unconfirmed:
            self.all_settled.set()

    def send_credits(self) -> None:
        if self.stopping.is_set() or self.drained:
            self.send(Worker(credits=scheduler_pb2.Credits(free=0)))

    def flush_logs(self) -> None:
        if self.logs and self.stream is not None:
            batch, self.logs = self.logs, []
            self.stream.logs(batch)

    # ------------------------------------------------------------ runs

    async def execute(self, run: Run) -> None:
        dispatch = run.dispatch
        try:
            if run.handle is not None:  # taken back from infrastructure an earlier worker started
                await self.supervise(run, True)
                return
            delay = from_timestamp(dispatch.scheduled_start).timestamp() - time.time()
            if delay > 0:  # prefetched: start on time, not before
                await asyncio.sleep(delay)
            assert self.infrastructure is not None
            config = fill_environment(from_struct(dispatch.job_configuration), SharedEnvironment())
            # The flow's parent is this worker's run span when there is one (see workers/telemetry.py).
            traceparent = current_traceparent() or dispatch.traceparent
            spec = RunSpec(
                dispatch.run, dispatch.entrypoint, from_struct(dispatch.parameters), config, self.options.address, traceparent,
                token=dispatch.run_token, allowed_entrypoints=self.options.allowed_entrypoints,
                allow_command=self.options.allow_command, pool_entrypoints=list(dispatch.allowed_entrypoints),
                run_name=dispatch.name, lease=dispatch.lease,
            )
            self.send(Worker(started=scheduler_pb2.Started(run=dispatch.run, lease=dispatch.lease, at=to_timestamp(datetime.now(timezone.utc)))))
            run.started_at = time.monotonic()
            self.say(f"run {dispatch.name} ({dispatch.run[:8]}) started")
            try:
                run.handle = await self.infrastructure.submit(spec)
            except Exception as exc:
                self.log_line(dispatch.run, "stderr", f"could not start the run: {exc}")
                self.report(run, "FAILED", None, f"could not start the run: {exc}")
                return
            await self.supervise(run, config.get("stream_output", True) is not False)
        except asyncio.CancelledError:
            if run.handle is not None:
                await run.handle.kill()
            self.report(run, "CANCELLED", None, "cancelled before it started" if run.handle is None else "cancelled")
            raise
        except Exception as exc:  # the worker's own failure: the run is told, and its slot freed
            if run.handle is not None:
                with contextlib.suppress(Exception):
                    await run.handle.kill()
            if run.dispatch.run in self.runs:
                self.report(run, "CRASHED", None, f"the worker failed while running it: {exc!r}")

    async def supervise(self, run: Run, stream_output: bool) -> None:
        """Follow a started run to its end: its output into the run's logs, its outcome reported."""
        assert run.handle is not None
        pump = asyncio.create_task(self.pump(run, stream_output))
        outcome = await run.handle.wait()
        await pump
        if run.dispatch.run not in self.runs:  # refused meanwhile: the scheduler has settled it already
            self.say(f"run {run.dispatch.name} ({run.dispatch.run[:8]}) stopped: no longer this worker's", "yellow")
            self.run_ended.set()
            return
        if run.cancelled:
            self.report(run, "CANCELLED", outcome.exit_code, "cancelled")
        elif outcome.crash:
            self.report(run, "CRASHED", outcome.exit_code, outcome.crash)
        elif outcome.signal:
            self.report(run, "CRASHED", outcome.exit_code, f"the flow process died on {outcome.signal}")
        elif outcome.exit_code == 0:
            self.report(run, "COMPLETED", 0, "")
        else:
            self.report(run, "FAILED", outcome.exit_code, f"the flow exited with code {outcome.exit_code}")

    def log_line(self, run_id: str, stream: str, text: str) -> str:
        """Queue a line of a run's output for the scheduler; the line as sent (masked)."""
        run = self.runs.get(run_id)
        if run is not None:
            for secret in run.dispatch.masked:  # the run's secret values never reach its logs
                if secret in text:
                    text = text.replace(secret, MASK)
        self.logs.append(scheduler_pb2.LogLine(run=run_id, stream=stream, text=sendable(text), at=to_timestamp(datetime.now(timezone.utc))))
        if len(self.logs) >= LOG_BATCH_LINES:
            self.flush_logs()
        return text

    async def pump(self, run: Run, echo: bool) -> None:
        assert run.handle is not None
        async for stream, text in run.handle.logs():
            text = self.log_line(run.dispatch.run, stream, text)
            if echo:
                self.console.print(f"  {run.dispatch.name} | {text}", markup=False, highlight=False)

    async def cancel(self, run_id: str) -> None:
        run = self.runs.get(run_id)
        if run is None:
            return
        run.cancelled = True
        self.say(f"run {run.dispatch.name} ({run_id[:8]}) cancelling", "yellow")
        if run.handle is not None:
            await run.handle.kill()
        elif run.task is not None:
            run.task.cancel()

    # ------------------------------------------------------------ leftovers

    def backend(self, kind: str) -> Infrastructure:
        infrastructure = backend_for(kind)
        bind = getattr(infrastructure, "bind", None)  # a backend that labels what it creates with its worker
        if bind is not None:
            bind(self.options.name, self.options.pool)
        warm = getattr(infrastructure, "warm", None)  # the process backend: warm starts
        if warm is not None and self.options.warm_start:
            warm(self.options.preload)
        return infrastructure

    async def take_back_leftovers(self, claimed: bool) -> None:
        """Runs whose infrastructure an earlier process of this worker started (its containers,
        found by their labels). Claimed in the Hello, each is followed to its end as if this
        process had started it, and the scheduler refuses the ones whose lease is no longer
        ours (they are stopped then); not claimed, the scheduler has settled them already, and
        what is left of them is stopped."""
        find = getattr(self.infrastructure, "leftovers", None)
        if find is None:
            return
        self.looked_for_leftovers = True
        try:
            found = await find()
        except Exception as exc:  # a daemon that is down: new runs will say so, one by one
            self.say(f"could not look for runs an earlier worker left: {exc}", "yellow")
            return
        for left in found:
            if left.run_id in self.runs:
                continue
            label = f"run {left.run_name} ({left.run_id[:8]})"
            if not claimed:
                await left.handle.kill()
                await left.handle.wait()
                self.say(f"{label} is no longer this worker's: stopped what was left of it", "yellow")
                continue
            run = self.runs[left.run_id] = Run(scheduler_pb2.Dispatch(run=left.run_id, lease=left.lease, name=left.run_name))
            run.handle, run.started_at = left.handle, time.monotonic()
            self.say(f"{label} taken back from an earlier worker ({'running' if left.running else 'ended'})", "cyan")
            run.task = asyncio.create_task(self.execute(run), name=f"run-{left.run_id}")

    # ------------------------------------------------------------ the stream

    def hello(self) -> scheduler_pb2.Hello:
        hello = scheduler_pb2.Hello(
            name=self.options.name,
            pool=self.options.pool,
            queues=self.options.queues,
            type=self.options.type,
            limit=self.options.limit,
            prefetch_seconds=self.options.prefetch_seconds,
            once=self.options.run_once,
            holding={run_id: run.dispatch.lease for run_id, run in self.runs.items()},
            finished=[outcome.finished for outcome in self.unconfirmed.values()],
        )
        if self.options.base_job_template:
            hello.base_job_template.update(self.options.base_job_template)
        return hello

    async def handle(self, message: scheduler_pb2.SchedulerMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "dispatch":
            dispatch = message.dispatch
            if dispatch.run in self.runs:  # a repeat after a reconnect: ours already
                self.send(Worker(ack=scheduler_pb2.Ack(run=dispatch.run, lease=dispatch.lease)))
                return
            if self.stopping.is_set():
                return  # its lease will expire and another worker takes it
            if from_timestamp(dispatch.scheduled_start).timestamp() > time.time():
                # Prefetched: it starts later, so it is acknowledged now (its lease then holds
                # until it starts). A run that starts at once is acknowledged by its Started.
                self.send(Worker(ack=scheduler_pb2.Ack(run=dispatch.run, lease=dispatch.lease)))
            self.say(f"run {dispatch.name} ({dispatch.run[:8]}) received from queue {dispatch.queue}")
            run = self.runs[dispatch.run] = Run(dispatch)
            work = self.execute(run)
            if self.telemetry is not None:
                work = self.telemetry.run(dispatch, work, lambda: self._outcome(dispatch.run))
            run.task = asyncio.create_task(work, name=f"run-{dispatch.run}")
        elif kind == "cancel":
            await self.cancel(message.cancel.run)
        elif kind == "drain":
            self.drained = True
            if self.options.run_once:
                self.say("took the runs due now (run-once)")
        elif kind == "settled":
            self.forget_outcome(message.settled.run, message.settled.lease)
        elif kind == "redirect":  # the pool moved to another replica: the stream ends next
            self.learn_replicas([*message.redirect.replicas, message.redirect.address])
            self.moved_to = message.redirect.address or None
            self.say(f"work pool moved: {message.redirect.reason}", "yellow")
        elif kind == "refused":
            refused = message.refused
            self.forget_outcome(refused.run, refused.lease)  # refused for good: sending it again changes nothing
            run = self.runs.get(refused.run)
            if run is not None and refused.lease in (0, run.dispatch.lease):
                del self.runs[refused.run]
                self.say(f"run {run.dispatch.name} ({refused.run[:8]}) is no longer ours: {refused.reason}", "yellow")
                run.cancelled = True
                if run.handle is not None:
                    await run.handle.kill()
                elif run.task is not None:
                    run.task.cancel()

    async def heartbeat(self, stream: WorkerStream) -> None:
        while True:
            stream.heartbeat()
            self.flush_logs()
            await asyncio.sleep(self.heartbeat_seconds / 2)

    async def resend(self, stream: WorkerStream) -> None:
        """Send again, on this stream, the outcomes still unanswered after a while, with
        backoff: the scheduler answers each with Settled once recorded, and one whose write
        failed (a database that went away a moment) gets no answer."""
        delay = RESEND_FIRST_SECONDS
        while True:
            sent = set(self.unconfirmed)
            await asyncio.sleep(delay)
            waiting = [outcome for run_id, outcome in self.unconfirmed.items() if run_id in sent]
            if not waiting:
                delay = RESEND_FIRST_SECONDS
                continue
            for outcome in waiting:
                stream.send(outcome)
            delay = min(delay * 2, RESEND_MOST_SECONDS)

    async def log_flusher(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            self.flush_logs()

    async def session(self, client: AsyncClient) -> None:
        """One connection: Hello, resend outcomes, then serve until the stream ends."""
        if not self.looked_for_leftovers and self.infrastructure is not None:
            await self.take_back_leftovers(claimed=True)  # claimed in this Hello
        hello = self.hello()
        stream = WorkerStream(client, hello)
        welcome = await stream.open(WELCOME_SECONDS)
        # The scheduler settled the outcomes the Hello carried before it welcomed us.
        for finished in hello.finished:
            self.forget_outcome(finished.run, finished.lease)
        self.stream = stream
        if not self.options.run_once:
            self.drained = False  # a Drain was the last stream's: this one starts afresh
        if self.ever_connected and self.telemetry is not None:
            self.telemetry.reconnected()
        self.established = self.ever_connected = True
        self.heartbeat_seconds = welcome.heartbeat_seconds or 30.0
        if self.infrastructure is None:
            self.infrastructure = self.backend(self.options.type or welcome.pool_type)
            await self.take_back_leftovers(claimed=False)  # the Hello claimed none of them
        self.connected_since, self.disconnected_since = time.monotonic(), None
        self.learn_replicas(welcome.replicas)
        self.say(f"connected to {client.address} as {self.options.name} (pool {self.options.pool}, queues {', '.join(welcome.queues)})", "cyan")
        self.send_credits()
        beating = asyncio.create_task(self.heartbeat(stream))
        resending = asyncio.create_task(self.resend(stream))
        incoming: asyncio.Task[Any] | None = None
        # A server that promises pings (Welcome.ping_seconds) and goes silent for three of
        # them is stopped or cut off: connect again (elsewhere, with replicas) rather than wait.
        silence = max(3 * welcome.ping_seconds, 2.0) if welcome.ping_seconds > 0 else None
        try:
            while True:
                if self.options.run_once and self.drained and not self.runs:
                    self.flush_logs()
                    stream.goodbye()
                    return
                if incoming is None:  # the rest of a batch read already: no task, no wait
                    message = stream.buffered()
                    if message is not None:
                        await self.handle(message)
                        continue
                # Wake for a message, or when a run ends (run-once then may be done).
                incoming = incoming or asyncio.create_task(stream.receive())
                self.run_ended.clear()
                ended = asyncio.create_task(self.run_ended.wait())
                wait = None if silence is None else max(0.05, stream.heard + silence - time.monotonic())
                await asyncio.wait({incoming, ended}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                ended.cancel()
                if not incoming.done():
                    if silence is not None and time.monotonic() - stream.heard > silence:
                        stream.abort()
                        raise SchedulerSilent(f"the scheduler at {client.address} sent nothing for {silence:g}s")
                    continue
                message, incoming = incoming.result(), None
                if message is None:
                    raise Unavailable("the scheduler closed the stream")
                await self.handle(message)
        finally:
            if incoming is not None:
                incoming.cancel()  # the read itself stays with the stream, which close() drains
            beating.cancel()
            resending.cancel()
            self.stream = None
            self.connected_since, self.disconnected_since = None, time.monotonic()
            await stream.close()

    def learn_replicas(self, addresses: Any) -> None:
        """Scheduler replicas the server named (Welcome, Redirect): where to connect should
        the configured address not answer."""
        for address in addresses:
            if address and address != self.options.address and address not in self.replicas:
                self.replicas.append(address)

    def client_for(self, address: str) -> AsyncClient:
        client = self.clients.get(address)
        if client is None:
            client = self.clients[address] = AsyncClient(address)
        return client

    async def connect_forever(self, client: AsyncClient) -> None:
        """Hold a stream until stopped; reconnect with jittered backoff when it drops.

        With several scheduler replicas, the one configured may send the worker to the one
        that dispatches its pool (a Redirect, at once or when the pool moves): the worker
        connects there without waiting, and goes back to the configured address, then to
        the other replicas it was told of, when that one cannot be reached."""
        delay = 0.2
        started = time.monotonic()
        self.clients.setdefault(client.address, client)
        target: str | None = None  # where a redirect sent us
        fallback = 0  # the next known replica to try when the configured one is down
        redirects = 0
        while not self.stopping.is_set():
            self.established = False
            if target:
                address = target
            elif fallback and self.replicas:
                address = self.replicas[(fallback - 1) % len(self.replicas)]
            else:
                address = client.address
            try:
                await self.session(self.client_for(address))
                return  # run-once: the due runs are done
            except Redirected as moved:
                self.learn_replicas([*moved.replicas, moved.address])
                redirects += 1
                target = moved.address or None
                if target:
                    fallback = 0
                    self.say(f"sent to the scheduler replica at {moved.address}", "cyan")
                    if redirects < 5:
                        continue  # at once: the replica that answered is alive
                else:  # the pool's owner does not answer: this replica tells us who next, in a moment
                    self.say(f"waiting for a scheduler replica to take the pool: {moved}", "yellow")
                    await asyncio.sleep(0.25 * (0.5 + random.random()))
                    if redirects < 40:  # ten seconds, more than an ownership lease
                        continue
                redirects = 0  # replicas that disagree for a moment: back off as for an outage
                delay = 0.2
            except Unavailable as exc:
                redirects = 0
                silent = isinstance(exc, SchedulerSilent)
                if self.established:
                    delay = 0.2
                elif not self.ever_connected and time.monotonic() - started > self.options.connect_timeout:
                    raise Unavailable(f"{exc} (gave up after {self.options.connect_timeout:g}s)") from None
                if self.moved_to:  # the pool moved while this stream was open
                    target, self.moved_to = self.moved_to, None
                    continue
                if target:
                    # The replica we were sent to is gone: back to the configured one, soon
                    # (it answered a moment ago, and tells us who dispatches the pool now).
                    target, delay = None, 0.2
                elif self.replicas and (silent or not self.established):
                    fallback += 1  # the configured replica is down or silent: try the others in turn
                    delay = min(delay, 0.4)
                self.say(f"stream down, retrying in {delay:.1f}s: {exc}", "yellow")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)

    async def wait_for_runs(self, timeout: float) -> None:
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def health(self) -> tuple[bool, dict[str, Any]]:
        healthy, body = stream_health(self.connected_since, self.disconnected_since, self.options.healthcheck_down_seconds)
        probe = getattr(self.infrastructure, "health", None)  # a backend with a daemon of its own says if it answers
        if probe is not None:
            reachable, detail = probe()
            body.update(detail)
            if not reachable:
                healthy, body["status"] = False, "unhealthy"
        body.update(worker=self.options.name, pool=self.options.pool, runs=len(self.runs))
        return healthy, body

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.begin_stop)
        if self.options.type:
            self.infrastructure = self.backend(self.options.type)
        health = None
        if self.options.healthcheck is not None:
            host, port = self.options.healthcheck
            try:
                health = HealthServer(host, port, self.health).start()
            except OSError as exc:
                raise ValueError(f"cannot serve the health check on {host}:{port}: {exc.strerror or exc}") from None
            self.say(f"health check at {health.address}")
        try:
            return await self.serve()
        finally:
            if health is not None:
                health.stop()
            close = getattr(self.infrastructure, "close", None)
            if close is not None:
                await close()

    async def serve(self) -> int:
        async with AsyncClient(self.options.address) as client:
            flusher = asyncio.create_task(self.log_flusher())
            connector = asyncio.create_task(self.connect_forever(client))
            stop = asyncio.create_task(self.stopping.wait())
            try:
                done, _ = await asyncio.wait({connector, stop}, return_when=asyncio.FIRST_COMPLETED)
                if connector in done:
                    connector.result()  # a refused Hello or an unreachable server ends here
                    await self.wait_for_runs(None)  # type: ignore[arg-type]
                    return 0
                self.say(f"stopping: waiting up to {self.options.grace_seconds:g}s for {len(self.runs)} runs", "yellow")
                self.send_credits()
                await self.wait_for_runs(self.options.grace_seconds)
                for run_id in list(self.runs):
                    await self.cancel(run_id)
                await self.wait_for_runs(10.0)
                self.flush_logs()
                if self.stream is not None:  # the last outcomes: recorded, or sent with the next Hello
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.all_settled.wait(), 5.0)
                    if self.stream is not None:
                        self.stream.goodbye()  # OFFLINE now, not three missed beats later
                connector.cancel()
                with contextlib.suppress(asyncio.CancelledError, ShiftbossError):
                    await connector
                return 0
            finally:
                flusher.cancel()
                stop.cancel()
                for other in list(self.clients.values()):
                    if other is not client:
                        with contextlib.suppress(Exception):
                            await other.close()

    def begin_stop(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()
