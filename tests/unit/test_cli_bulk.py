"""The `bulk` CLI option: every command that has one can fill its bulk RPC's items."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor

from shiftboss.cli.descriptors import arg_options, commands
from shiftboss.cli.generated import build_bulk, build_request


def test_every_bulk_command_fills_its_items_field_by_field() -> None:
    bulk = [c for c in commands() if c.options.bulk]
    assert [c.options.path for c in bulk] == ["deployment run"]
    for command in bulk:
        method = command.service.methods_by_name[command.options.bulk]
        repeated = [f for f in method.input_type.fields if f.is_repeated and f.type == FieldDescriptor.TYPE_MESSAGE]
        assert len(repeated) == 1, f"{method.name}: one repeated field of items"
        item = repeated[0].message_type
        for field in command.method.input_type.fields:
            target = item.fields_by_name.get(arg_options(field).bulk_as or field.name)
            assert target is not None, f"{command.options.path}: {field.name} fills no field of {item.name}"
            assert (target.type, target.is_repeated) == (field.type, field.is_repeated), field.name


def test_deployment_run_count_becomes_one_create_per_run() -> None:
    command = next(c for c in commands() if c.options.path == "deployment run")
    request = build_request(
        command, {"name": "nightly", "parameters": ("n=3",), "queue": "fast", "start_in": 60.0, "idempotency_key": "k", "retries": 2}
    )
    bulk = build_bulk(command, request, 3)
    assert [(r.deployment, r.queue, r.start_in, r.retries, r.parameters["n"]) for r in bulk.runs] == [("nightly", "fast", 60.0, 2, 3)] * 3
    assert [r.idempotency_key for r in bulk.runs] == ["k-0", "k-1", "k-2"]
    assert not build_bulk(command, build_request(command, {"name": "x"}), 2).runs[0].HasField("retries")
