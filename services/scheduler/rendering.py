"""Job configurations of new runs: rendered by TemplateService, remembered by the scheduler.

A rendering is a pure function of the pool's base job template, the deployment's job
variables and the run's. The scheduler holds each pool's template (PoolService sends it
with every change of the pool), so it keeps what TemplateService answered per pool, keyed
by the two sets of variables, and asks again only for a combination it has not seen; a pool
whose template changes starts afresh. TemplateService stays the one place that renders:
most runs of a deployment carry no variables of their own, and they cost it one call
per deployment and template instead of one per run. Refusals are not kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shiftboss._wire import from_struct
from shiftboss.services.scheduler.telemetry import traced
from shiftboss.v1 import templates_pb2

if TYPE_CHECKING:
    from shiftboss.services.scheduler.engine import Scheduler

@dataclass(frozen=True, slots=True)
class Rendering:
    configuration: dict[str, Any]
    #: The values of the template's secret variables in this rendering.
    secrets: list[Any]
    #: The names of the template's secret variables.
    secret_names: frozenset[str]


#: Renderings kept per pool; the oldest goes first.
MAX_PER_POOL = 1024


class RenderCache:
    def __init__(self, service: Scheduler) -> None:
        self.service = service
        #: pool -> (the template rendered with, {variables key: rendering})
        self._pools: dict[str, tuple[Any, dict[str, Rendering]]] = {}

    async def render(self, pool: str, deployment_variables: dict[str, Any], run_variables: dict[str, Any]) -> Rendering:
        """The job configuration for these variables; callers must not modify it (runs share it)."""
        runtime = self.service.dispatcher.pools.get(pool)
        template = runtime.template if runtime is not None else None
        if template is None:  # not followed yet: TemplateService looks the pool up
            return await self._ask(templates_pb2.RenderRequest(pool=pool), deployment_variables, run_variables)
        held = self._pools.get(pool)
        if held is None or held[0] is not template:
            for gone in set(self._pools) - set(self.service.dispatcher.pools):
                del self._pools[gone]
            held = self._pools[pool] = (template, {})
        entries = held[1]
        key = json.dumps((deployment_variables, run_variables), sort_keys=True, separators=(",", ":"))
        rendering = entries.get(key)
        if rendering is not None:
            return rendering
        rendering = await self._ask(templates_pb2.RenderRequest(template=template), deployment_variables, run_variables)
        if runtime.template is template:  # still the pool's template once the answer is back
            if len(entries) >= MAX_PER_POOL:
                del entries[next(iter(entries))]
            entries[key] = rendering
        return rendering

    @property
    def observer(self) -> Any:
        return self.service.observer

    # The span marks TemplateService's work; a rendering reused from here costs no span.
    @traced("render")
    async def _ask(
        self, request: templates_pb2.RenderRequest, deployment_variables: dict[str, Any], run_variables: dict[str, Any]
    ) -> Rendering:
        service = self.service
        request.deployment_variables.update(deployment_variables)
        request.run_variables.update(run_variables)
        reply = await service.call(service.templates.Render, request)
        values = from_struct(reply.values) if reply.secret_variables else {}
        secrets = [values[name] for name in reply.secret_variables if values.get(name) is not None]
        return Rendering(from_struct(reply.job_configuration), secrets, frozenset(reply.secret_variables))
