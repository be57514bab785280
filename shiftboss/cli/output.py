"""How replies are shown: rich tables for people, proto3 JSON with `-o json` for programs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO, Any

import click
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from shiftboss._wire import message_to_dict

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


class Refusal(click.ClickException):
    """A command that cannot run here: its message is the whole of what it prints."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.message, err=True)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def cell(value: Any, width: int = 60) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(",", ":"))
        return text if len(text) <= width else text[: width - 3] + "..."
    return str(value)


def print_json(value: Any) -> None:
    # Plain print: rich would re-highlight and wrap the JSON.
    print(to_json(value))


def print_object(message: Message, title: str = "", omit: tuple[str, ...] = ()) -> None:
    data = {k: v for k, v in message_to_dict(message).items() if k not in omit}
    table = Table(title=title or None, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        # Large documents (templates, job configurations) stay one line here; -o json has them whole.
        table.add_row(key, cell(value, width=100))
    stdout.print(table)
    if any(isinstance(v, dict) and len(json.dumps(v)) > 100 for v in data.values()):
        stderr.print("(long values are cut; -o json prints them whole)", style="dim")


def since(value: Any, now: datetime | None = None) -> str:
    """A timestamp as how far it is from now, as Prefect's `flow-run ls` shows When: `in 5m`, `3h ago`."""
    if not isinstance(value, str) or not value:
        return cell(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    if abs(seconds) < 1:
        return "now"
    amount = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if amount >= size:
            text = f"{int(amount // size)}{unit}"
            break
    return f"{text} ago" if seconds > 0 else f"in {text}"


def print_items(items: list[Message], columns: list[str], title: str = "") -> None:
    """`columns` names fields; `header=field` shows a timestamp field as time from now under that header."""
    rows = [message_to_dict(item) for item in items]
    columns = columns or (list(rows[0]) if rows else [])
    specs = [column.split("=", 1) if "=" in column else (column, "") for column in columns]
    headers = [header.replace("_", " ").title() for header, _ in specs]
    table = [[since(row.get(field)) if field else cell(row.get(header)) for header, field in specs] for row in rows]
    print_table(title, headers, table, no_wrap={"Id", "Name"})


def print_table(title: str, headers: list[str], rows: list[list[str]], no_wrap: frozenset[str] | set[str] = frozenset({"Name"})) -> None:
    table = Table(title=title or None, title_justify="left")
    for header in headers:
        table.add_column(header, no_wrap=header in no_wrap)
    for row in rows:
        table.add_row(*row)
    stdout.print(table)
