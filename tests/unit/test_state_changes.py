"""A run changes state one way: `Scheduler.transition`, checked by states.py. The fast
path's lease, written as one guarded UPDATE, must stay a legal transition and keep its guard."""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy.dialects import sqlite

from shiftboss.services.scheduler import hot, states

SCHEDULER = Path(__file__).resolve().parents[2] / "services" / "scheduler"


def test_the_lease_is_a_legal_transition_that_the_database_checks() -> None:
    before, after = states.LEASED
    states.check(before, after)
    compiled = hot.CoreStatements._LEASE.compile(dialect=sqlite.dialect())
    assert "WHERE" in str(compiled) and "flow_runs.state = ?" in str(compiled)
    assert (compiled.params["state"], compiled.params["state_1"]) == (after, before)
    assert f"SET state = '{after}'" in hot.PgStatements._LEASE
    assert f"AND state = '{before}'" in hot.PgStatements._LEASE


def test_only_the_recorder_of_transitions_writes_a_runs_state() -> None:
    """runs.record is what `transition` calls; transition marks a retry; the ownership
    module replaces a pool's admission state (`runtime.state`), no run's."""
    allowed = {("runs.py", "run.state"), ("runs.py", "run.state_name"), ("engine.py", "run.state_name"), ("ownership.py", "runtime.state")}
    found = set()
    for path in SCHEDULER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                for part in ast.walk(target):
                    if isinstance(part, ast.Attribute) and part.attr in ("state", "state_name"):
                        found.add((path.name, ast.unparse(part)))
    assert found <= allowed, sorted(found - allowed)
    assert ("runs.py", "run.state") in found  # the check sees the writes it guards
