"""How the CLI shows lists: `flow-run ls` as Prefect's, its columns within 80 characters."""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from shiftboss._wire import to_timestamp
from shiftboss.cli import output
from shiftboss.cli.descriptors import commands
from shiftboss.v1 import scheduler_pb2

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("offset", "shown"),
    [(0, "now"), (-42, "in 42s"), (300, "5m ago"), (-3 * 3600 - 5, "in 3h"), (400 * 86400, "400d ago")],
)
def test_prefect_flow_run_ls_when_is_time_from_now(offset: float, shown: str) -> None:
    moment = (NOW - timedelta(seconds=offset)).isoformat().replace("+00:00", "Z")
    assert output.since(moment, NOW) == shown


def test_prefect_flow_run_ls_shows_the_run_name_within_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    columns = [list(c.options.columns) for c in commands() if c.options.path == "flow-run ls"][0]
    assert columns == ["id", "name", "state", "when=scheduled_start"]
    screen = io.StringIO()
    monkeypatch.setattr(output, "stdout", Console(file=screen, width=80, color_system=None))
    runs = [
        scheduler_pb2.FlowRun(
            id=str(uuid.uuid4()), name="dapper-walrus", state=scheduler_pb2.CANCELLING,
            scheduled_start=to_timestamp(datetime.now(timezone.utc) - timedelta(days=400)),
        )
    ]
    output.print_items(runs, columns, "Flow runs")
    lines = screen.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    row = [line for line in lines if runs[0].id in line]
    assert len(row) == 1 and "dapper-walrus" in row[0] and "CANCELLING" in row[0] and "400d ago" in row[0]
