"""HeartbeatService's metric: workers ONLINE per pool (`shiftboss.workers.online`,
attribute `shiftboss.pool`), counted in its database when a reader collects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Observation

from shiftboss.services.gauges import LoopReading
from shiftboss.services.heartbeats import domain

if TYPE_CHECKING:
    from shiftboss.services.heartbeats.service import HeartbeatService


class HeartbeatTelemetry:
    def __init__(self, service: HeartbeatService) -> None:
        self.service = service
        self.online: LoopReading[dict[str, int]] = LoopReading(read_async=self._count)
        service.mesh.telemetry.meter("shiftboss.heartbeats").create_observable_gauge(
            "shiftboss.workers.online", [self._observe], unit="{worker}", description="Workers ONLINE in a work pool"
        )

    async def _count(self) -> dict[str, int]:
        async with self.service.db.reading() as session:
            return await domain.count_online(session)

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        counts = self.online.get() or {}
        return [Observation(n, {"shiftboss.pool": pool}) for pool, n in sorted(counts.items())]

    def close(self) -> None:
        self.online.close()


def observe(service: HeartbeatService) -> HeartbeatTelemetry | None:
    return HeartbeatTelemetry(service) if service.mesh.telemetry is not None else None
