"""TemplateService's gRPC servicer: defaults, validation and rendering of base job templates."""

from __future__ import annotations

from typing import Any

from grpc import aio

from shiftboss._wire import from_struct, to_struct
from shiftboss.errors import InvalidArgument
from shiftboss.services.templates.builtin import KNOWN_TYPES, default_template
from shiftboss.services.templates.compiler import compile_template
from shiftboss.v1 import pools_pb2, pools_pb2_grpc, templates_pb2, templates_pb2_grpc


class TemplateService(templates_pb2_grpc.TemplateServiceServicer):
    name = "templates"
    full_name = templates_pb2.DESCRIPTOR.services_by_name["TemplateService"].full_name

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh

    def register(self, server: aio.Server) -> None:
        templates_pb2_grpc.add_TemplateServiceServicer_to_server(self, server)

    async def start(self) -> None:
        """Templates are pure: no tables of their own."""

    def closing(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def GetDefaultBaseJobTemplate(
        self, request: templates_pb2.GetDefaultBaseJobTemplateRequest, context: Any
    ) -> templates_pb2.BaseJobTemplate:
        if request.type not in KNOWN_TYPES:
            shown = f"unknown work pool type {request.type!r}" if request.type else "is required"
            raise InvalidArgument(f"type: {shown}; one of {', '.join(KNOWN_TYPES)}", field="type")
        return templates_pb2.BaseJobTemplate(template=to_struct(default_template(request.type)))

    async def ValidateTemplate(
        self, request: templates_pb2.ValidateTemplateRequest, context: Any
    ) -> templates_pb2.ValidateTemplateResponse:
        compiled = compile_template(from_struct(request.template))
        return templates_pb2.ValidateTemplateResponse(
            variables=sorted(compiled.variables), placeholders=sorted(compiled.placeholders)
        )

    async def Render(self, request: templates_pb2.RenderRequest, context: Any) -> templates_pb2.RenderResponse:
        if request.pool:
            pools = self.mesh.peers.stub("pools", pools_pb2_grpc.PoolServiceStub)
            pool = await self.mesh.peers.call(pools.GetWorkPool, pools_pb2.WorkPoolRef(name=request.pool))
            template = from_struct(pool.base_job_template)
        elif request.HasField("template"):
            template = from_struct(request.template)
        else:
            raise InvalidArgument("pool: name a work pool (or send a template) to render", field="pool")
        compiled = compile_template(template)
        deployment = from_struct(request.deployment_variables)
        run = from_struct(request.run_variables)
        values = compiled.merge(deployment, run, leave_required=request.leave_required)
        return templates_pb2.RenderResponse(
            job_configuration=to_struct(compiled.render_values(values)),
            values=to_struct(values),
            secret_variables=sorted(compiled.secrets),
        )


def build(mesh: Any) -> TemplateService:
    return TemplateService(mesh)
