"""The command tree built from the proto contracts.

Each RPC with a `(shiftboss.v1.cli)` option becomes a command at its `path`; each field
of its request becomes an argument or a flag (as its `(shiftboss.v1.arg)` option says),
with the field's proto comment as help. Nothing here names a particular RPC.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml
from google.protobuf.descriptor import FieldDescriptor

from shiftboss._wire import from_struct, message_to_dict, to_struct
from shiftboss.cli import output
from shiftboss.cli.descriptors import Command, arg_options, commands, field_help
from shiftboss.errors import ShiftbossError

_SCALARS: dict[int, Any] = {
    FieldDescriptor.TYPE_STRING: str,
    FieldDescriptor.TYPE_INT32: int,
    FieldDescriptor.TYPE_INT64: int,
    FieldDescriptor.TYPE_UINT32: int,
    FieldDescriptor.TYPE_DOUBLE: float,
    FieldDescriptor.TYPE_FLOAT: float,
}


def _flag(field: FieldDescriptor) -> str:
    opts = arg_options(field)
    return "--" + (opts.flag or field.name).replace("_", "-")


def _is_struct(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name == "google.protobuf.Struct"


def _param(field: FieldDescriptor) -> click.Parameter | None:
    opts = arg_options(field)
    if opts.hidden:
        return None
    help_text = field_help(field)
    decls = [_flag(field)] + ([f"-{opts.short}"] if opts.short else [])
    if _is_struct(field) and opts.key_value:
        return click.Option([*decls, field.name], metavar="KEY=VALUE", multiple=True, help=help_text)
    if _is_struct(field):
        metavar = "FILE" if opts.file else "JSON"
        if opts.positional:
            return click.Argument([field.name], metavar=metavar)
        return click.Option([*decls, field.name], metavar=metavar, help=help_text, default=None)
    if field.type == FieldDescriptor.TYPE_ENUM:
        choice = click.Choice([v.name for v in field.enum_type.values if v.number != 0], case_sensitive=False)
        if opts.positional:
            return click.Argument([field.name], type=choice)
        return click.Option([*decls, field.name], type=choice, multiple=field.is_repeated, help=help_text)
    if field.type == FieldDescriptor.TYPE_BOOL:
        if field.has_presence:
            on, off = _flag(field), "--no-" + _flag(field)[2:]
            return click.Option([f"{on}/{off}", field.name], default=None, help=help_text)
        return click.Option([*decls, field.name], is_flag=True, default=False, help=help_text)
    kind = _SCALARS.get(field.type, str)
    if opts.positional:
        return click.Argument([field.name], type=kind)
    if field.is_repeated:
        return click.Option([*decls, field.name], type=kind, multiple=True, help=help_text)
    return click.Option([*decls, field.name], type=kind, default=None, help=help_text)


def _load_document(field: FieldDescriptor, value: str) -> dict[str, Any]:
    flag = _flag(field)
    if arg_options(field).file:
        path = Path(value)
        if not path.is_file():
            raise click.BadParameter(f"{value}: no such file", param_hint=flag)
        text = path.read_text()
        try:
            data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise click.BadParameter(f"{value} is not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: {exc}", param_hint=flag) from None
    else:
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{value!r} is not valid JSON: {exc}", param_hint=flag) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"must hold a JSON object, got {type(data).__name__}", param_hint=flag)
    return data


def _key_values(field: FieldDescriptor, pairs: tuple[str, ...]) -> dict[str, Any]:
    """k=v pairs; a value that parses as JSON keeps its type (n=3 is a number, s=abc a string)."""
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=_flag(field))
        try:
            found[key] = json.loads(raw)
        except json.JSONDecodeError:
            found[key] = raw
    return found


def build_request(command: Command, values: dict[str, Any]) -> Any:
    request = command.method.input_type._concrete_class()
    for field in command.method.input_type.fields:
        value = values.get(field.name)
        if value is None or (field.is_repeated and not value):
            continue
        if _is_struct(field) and arg_options(field).key_value:
            getattr(request, field.name).CopyFrom(to_struct(_key_values(field, value)))
        elif _is_struct(field):
            getattr(request, field.name).CopyFrom(to_struct(_load_document(field, value)))
        elif field.type == FieldDescriptor.TYPE_ENUM:
            numbers = [field.enum_type.values_by_name[v.upper()].number for v in (value if field.is_repeated else [value])]
            if field.is_repeated:
                getattr(request, field.name).extend(numbers)
            else:
                setattr(request, field.name, numbers[0])
        elif field.is_repeated:
            getattr(request, field.name).extend(value)
        else:
            setattr(request, field.name, value)
    return request


def show(command: Command, request: Any, reply: Any, fmt: str, file: str | None) -> None:
    opts = command.options
    if opts.done:
        output.stdout.print(opts.done.format(**message_to_dict(request)), markup=False, highlight=False)
        return
    if opts.document:
        if fmt == "json":
            output.print_json(message_to_dict(reply))
            return
        document = from_struct(getattr(reply, opts.document))
        if file:
            Path(file).write_text(output.to_json(document) + "\n")
            output.stderr.print(f"Wrote {file}", markup=False, highlight=False)
        else:
            output.print_json(document)
        return
    if opts.items:
        items = list(getattr(reply, opts.items))
        if fmt == "json":
            output.print_json([message_to_dict(item) for item in items])
        else:
            output.print_items(items, list(opts.columns), opts.title)
        return
    if fmt == "json":
        output.print_json(message_to_dict(reply))
        return
    if not opts.secret:
        output.print_object(reply, opts.title)
        return
    output.print_object(reply, opts.title, omit=(opts.secret,))
    output.stderr.print(f"The {opts.secret.replace('_', ' ')} is printed below, once: keep it safe.", markup=False, highlight=False)
    print(getattr(reply, opts.secret))


def build_bulk(command: Command, request: Any, count: int) -> Any:
    """`count` items of the command's bulk RPC, each filled from the command's request."""
    method = command.service.methods_by_name[command.options.bulk]
    bulk = method.input_type._concrete_class()
    items = getattr(bulk, next(f.name for f in method.input_type.fields if f.is_repeated and f.message_type is not None))
    given = request.ListFields()
    for index in range(count):
        item = items.add()
        for field, value in given:
            target = arg_options(field).bulk_as or field.name
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(item, target).CopyFrom(value)
            elif field.is_repeated:
                getattr(item, target).extend(value)
            elif target == "idempotency_key":  # one key per item, so each makes one
                setattr(item, target, f"{value}-{index}")
            else:
                setattr(item, target, value)
    return bulk


def show_bulk(command: Command, reply: Any, fmt: str) -> None:
    """A bulk reply: its first repeated field, one item a line, under a count (on stderr, so
    the lines alone can be piped); `-o json`, the whole reply."""
    if fmt == "json":
        output.print_json(message_to_dict(reply))
        return
    items = getattr(reply, next(f.name for f in reply.DESCRIPTOR.fields if f.is_repeated))
    output.stderr.print(f"{command.options.title or 'Made'}s: {len(items)}", markup=False, highlight=False)
    for item in items:
        print(item)


def fail(exc: ShiftbossError) -> None:
    output.stderr.print(f"Error: {exc.message}", markup=False, highlight=False)
    raise SystemExit(1) from None


def stream_lines(command: Command, request: Any, fmt: str, client_factory: Any) -> Any:
    """A server stream: one line (or one JSON object) per message, as they arrive; the last one."""
    last = None
    try:
        with client_factory() as client:
            for last in client._stream(command.service.name, command.method.name, request):
                data = message_to_dict(last)
                if fmt == "json":
                    print(json.dumps(data), flush=True)
                else:
                    print(command.options.line.format(**data), flush=True)
    except ShiftbossError as exc:
        fail(exc)
    return last


def watch(command: Command, reply: Any, fmt: str, client_factory: Any) -> None:
    """--watch: follow what the command made until it ends; exit 1 unless it COMPLETED."""
    follower = next(c for c in commands() if c.service is command.service and c.method.name == command.options.watch)
    request = follower.method.input_type._concrete_class(id=reply.id)
    last = stream_lines(follower, request, fmt, client_factory)
    state = last.DESCRIPTOR.fields_by_name["state"].enum_type.values_by_number[last.state].name if last is not None else ""
    if state != "COMPLETED":
        output.stderr.print(f"flow run {reply.id} ended {state or 'without news'}", markup=False, highlight=False)
        raise SystemExit(1)


def make_command(command: Command, name: str, client_factory: Any) -> click.Command:
    fields = [f for f in command.method.input_type.fields]
    params = [p for p in (_param(f) for f in fields) if p is not None]
    opts = command.options
    if opts.json_output or opts.items:
        params.append(click.Option(["-o", "--output", "fmt"], type=click.Choice(["table", "json"]), default="table", help="Output format."))
    if opts.document:
        params.append(click.Option(["--file", "file"], default=None, metavar="PATH", help="Write the document to this file."))
    if opts.watch:
        params.append(click.Option(["--watch", "watch_until_done"], is_flag=True, help="Follow it until it ends; exit 1 unless it COMPLETED."))
    if opts.bulk:
        params.append(
            click.Option(
                ["--count", "count"], type=click.IntRange(min=1), default=None, metavar="N",
                help=f"Make N in one call ({opts.bulk}), all or none, and print their ids.",
            )
        )

    def callback(
        fmt: str = "table", file: str | None = None, watch_until_done: bool = False, count: int | None = None, **values: Any
    ) -> None:
        request = build_request(command, values)
        if command.method.server_streaming:
            stream_lines(command, request, fmt, client_factory)
            return
        if count is not None and watch_until_done:
            raise click.BadParameter("--watch follows one run; it does not go with --count", param_hint="--count")
        method = command.method.name if count is None else opts.bulk
        sent = request if count is None else build_bulk(command, request, count)
        try:
            with client_factory() as client:
                reply = client._invoke(command.service.name, method, sent)
        except ShiftbossError as exc:  # also a TLS file that cannot be read
            fail(exc)
        if count is not None:
            show_bulk(command, reply, fmt)
            return
        show(command, request, reply, fmt, file)
        if watch_until_done:
            watch(command, reply, fmt, client_factory)

    return click.Command(name, params=params, callback=callback, help=command.help, short_help=command.help.split(". ")[0])


def add_generated(root: click.Group, client_factory: Any) -> None:
    """Add every RPC's command to `root`, making the groups its path needs."""
    for command in commands():
        *groups, leaf = command.options.path.split()
        parent = root
        for group in groups:
            child = parent.commands.get(group)
            if child is None:
                child = click.Group(group, help=f"Manage {group.replace('-', ' ')}s.")
                parent.add_command(child)
            parent = child  # type: ignore[assignment]
        parent.add_command(make_command(command, leaf, client_factory))
