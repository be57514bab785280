"""Retries, as Prefect's RetryFailedFlows rule: a run that leaves RUNNING for FAILED with
attempts left is not failed but scheduled again, in a SCHEDULED state named AwaitingRetry,
`retry_delay_seconds` from now; its run count says how many attempts it has made. Here a
CRASHED run (its process or its worker lost) is retried the same way.

A deployment says how many retries its runs get; a run may say otherwise for itself."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from shiftboss.errors import InvalidArgument
from shiftboss.services.scheduler import states

AWAITING_RETRY = "AwaitingRetry"
#: Most retries a run may have, and the longest delay between attempts (a week).
MAX_RETRIES = 1000
MAX_DELAY_SECONDS = 7 * 86400.0
RETRIED = frozenset({states.FAILED, states.CRASHED})


def check(retries: int, delay: float, where: str = "") -> None:
    if not 0 <= retries <= MAX_RETRIES:
        field = f"{where}retries"
        raise InvalidArgument(f"{field}: must be between 0 and {MAX_RETRIES}, got {retries}", field=field)
    if not (math.isfinite(delay) and 0 <= delay <= MAX_DELAY_SECONDS):
        field = f"{where}retry_delay_seconds"
        raise InvalidArgument(f"{field}: must be between 0 and {MAX_DELAY_SECONDS:.0f} seconds, got {delay:g}", field=field)


def requested(request: Any) -> tuple[int | None, float | None]:
    """What a CreateFlowRun or RunDeployment request says of its run's retries (None: the deployment's)."""
    retries = request.retries if request.HasField("retries") else None
    delay = request.retry_delay_seconds if request.HasField("retry_delay_seconds") else None
    check(retries or 0, delay or 0.0)
    return retries, delay


def due(run: Any, to: str, force: bool) -> bool:
    """This change to FAILED or CRASHED becomes AwaitingRetry instead."""
    return not force and run.state == states.RUNNING and to in RETRIED and run.run_count <= run.retries


def repeated(run: Any, to: str) -> bool:
    """The outcome that put the run in AwaitingRetry, sent again (its worker did not hear
    the answer): nothing to do."""
    return run.state == states.SCHEDULED and run.state_name == AWAITING_RETRY and to in RETRIED


def schedule(run: Any, now: datetime, outcome: str, message: str) -> str:
    """Set the run up for its next attempt (once its AwaitingRetry state is recorded); the
    message of that state."""
    run.scheduled_start = now + timedelta(seconds=run.retry_delay_seconds)
    why = f": {message}" if message else ""
    return f"{AWAITING_RETRY}: attempt {run.run_count} of {run.retries + 1} {outcome}{why}; next in {run.retry_delay_seconds:g}s"


def describe(run: Any) -> str:
    """What explain says of a run awaiting its retry."""
    return f"awaiting retry: attempt {run.run_count + 1} of {run.retries + 1}"
