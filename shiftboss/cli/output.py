"""How replies are shown: rich tables for people, proto3 JSON with `-o json` for programs."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from shiftboss._wire import message_to_dict

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


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


def print_object(message: Message, title: str = "") -> None:
    data = message_to_dict(message)
    table = Table(title=title or None, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        # Large documents (templates, job configurations) stay one line here; -o json has them whole.
        table.add_row(key, cell(value, width=100))
    stdout.print(table)
    if any(isinstance(v, dict) and len(json.dumps(v)) > 100 for v in data.values()):
        stderr.print("(long values are cut; -o json prints them whole)", style="dim")


def print_items(items: list[Message], columns: list[str], title: str = "") -> None:
    table = Table(title=title or None, title_justify="left")
    rows = [message_to_dict(item) for item in items]
    columns = columns or (list(rows[0]) if rows else [])
    for column in columns:
        table.add_column(column.replace("_", " ").title(), no_wrap=column in ("id", "name"))
    for row in rows:
        table.add_row(*(cell(row.get(column)) for column in columns))
    stdout.print(table)
