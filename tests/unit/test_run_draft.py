"""A new run is inserted from a FlowRunDraft: it must carry every column of flow_runs."""

from __future__ import annotations

import dataclasses

from shiftboss.services.scheduler.models import FlowRunDraft, FlowRunRow


def test_draft_has_every_column_of_flow_runs() -> None:
    assert {f.name for f in dataclasses.fields(FlowRunDraft)} == set(FlowRunRow.__table__.columns.keys())
