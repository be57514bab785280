"""Where the worker daemon connects with several scheduler replicas: a Redirect is
followed at once, a replica that cannot be reached sends it back to the configured one,
and a configured replica that is down or silent sends it to the others it was told of."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from shiftboss.errors import Unavailable
from shiftboss.stream import Redirected, SchedulerSilent
from shiftboss.v1 import scheduler_pb2
from shiftboss.workers import daemon as daemon_module
from shiftboss.workers.daemon import Daemon, Options


class Client:
    def __init__(self, address: str) -> None:
        self.address = address

    async def close(self) -> None:
        pass


def scripted(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> tuple[Daemon, list[str]]:
    """A daemon whose sessions end as scripted (an exception, or None: done); the addresses it tried."""
    daemon = Daemon(Options(pool="etl", name="w", queues=[], address="home:1"), console=Console(file=io.StringIO()))
    tried: list[str] = []

    async def session(self: Daemon, client: Client) -> None:
        tried.append(client.address)
        outcome = outcomes.pop(0)
        if callable(outcome):
            outcome(self)
            outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    async def no_sleep(_seconds: float) -> None:
        return None

    monkeypatch.setattr(Daemon, "session", session)
    monkeypatch.setattr(daemon_module, "AsyncClient", Client)
    monkeypatch.setattr(daemon_module.asyncio, "sleep", no_sleep)
    return daemon, tried


def redirect(address: str, *replicas: str) -> Redirected:
    return Redirected(scheduler_pb2.Redirect(address=address, reason="owned there", replicas=list(replicas)))


async def test_a_redirect_is_followed_and_an_unreachable_owner_sends_it_home(monkeypatch: pytest.MonkeyPatch) -> None:
    daemon, tried = scripted(monkeypatch, [redirect("b:1", "home:1", "b:1"), Unavailable("refused"), redirect("c:1"), None])
    await daemon.connect_forever(Client("home:1"))  # type: ignore[arg-type]
    assert tried == ["home:1", "b:1", "home:1", "c:1"]
    assert daemon.replicas == ["b:1", "c:1"]


async def test_a_configured_replica_that_is_down_or_silent_sends_it_to_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    def established(d: Daemon) -> None:
        d.established = d.ever_connected = True
        d.learn_replicas(["home:1", "b:1", "c:1"])

    daemon, tried = scripted(
        monkeypatch,
        [established, SchedulerSilent("sent nothing for 2s"), Unavailable("refused"), None],
    )
    await daemon.connect_forever(Client("home:1"))  # type: ignore[arg-type]
    assert tried == ["home:1", "b:1", "c:1"]


async def test_a_pool_that_moves_on_an_open_stream_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def moved(d: Daemon) -> None:
        await d.handle(scheduler_pb2.SchedulerMessage(redirect=scheduler_pb2.Redirect(address="b:1", reason="moved")))

    def move(d: Daemon) -> None:
        d.established = d.ever_connected = True
        d.moved_to = "b:1"

    daemon, tried = scripted(monkeypatch, [move, Unavailable("the scheduler closed the stream"), None])
    await daemon.connect_forever(Client("home:1"))  # type: ignore[arg-type]
    assert tried == ["home:1", "b:1"]
    # The message itself sets where to go next.
    await moved(daemon)
    assert daemon.moved_to == "b:1"
