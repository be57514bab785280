"""What a worker may send on its stream, checked field by field before it reaches a batch.

The checks are those a unary request gets (names by the rule of pool names, defined enum
numbers, sizes, no NUL in text, finite numbers), made on the message alone: no database
round trip, so the stream loop stays as fast as it was. A bad Hello ends the stream (it is
the stream's identity); a bad report is refused on its own, and a bad log line dropped.
Whether a report may touch its run (its pool, its worker, its lease) is decided against
the run itself when the report is written (see outcomes.py).
"""

from __future__ import annotations

import math
import re
from typing import Any

from shiftboss.errors import InvalidArgument
from shiftboss.services.limits import refuse
from shiftboss.services.names import validate_name
from shiftboss.v1 import scheduler_pb2

__all__ = ["MAX_HELLO_QUEUES", "check_hello", "check_report", "check_log_line", "check_run_id"]

#: Queues one worker may name.
MAX_HELLO_QUEUES = 100
#: Runs a Hello may claim to hold, and outcomes it may carry (the daemon keeps at most 1,000).
MAX_HELLO_RUNS = 10_000
#: Longest prefetch a worker may ask for: a day.
MAX_PREFETCH_SECONDS = 86_400.0
#: Longest text of an outcome or a log line.
MAX_TEXT = 65_536
#: Longest infrastructure type (the workers table's column).
MAX_TYPE = 64
#: A run id as the scheduler makes them (uuid4), loosely: hex and dashes.
_RUN_ID = re.compile(r"[0-9A-Fa-f-]{1,64}")
#: The range of a Timestamp (years 1 to 9999).
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799
_LARGEST_LEASE = 2**31 - 1
#: States a worker may report in Finished.
FINAL = frozenset({scheduler_pb2.COMPLETED, scheduler_pb2.FAILED, scheduler_pb2.CRASHED, scheduler_pb2.CANCELLED})
_LOG_STREAMS = frozenset({"stdout", "stderr"})


def check_run_id(value: str, field: str = "run") -> None:
    if not _RUN_ID.fullmatch(value):
        shown = value[:40] + ("…" if len(value) > 40 else "")
        raise InvalidArgument(f"{field}: {shown!r} is not a flow run id", field=field)


def _check_lease(value: int, field: str = "lease") -> None:
    if not 1 <= value <= _LARGEST_LEASE:
        raise InvalidArgument(f"{field}: {value} is not the lease of a Dispatch", field=field)


def _check_text(value: str, field: str, limit: int = MAX_TEXT) -> None:
    if len(value) > limit:
        raise InvalidArgument(f"{field}: {len(value)} characters is longer than the limit of {limit}", field=field)
    if "\x00" in value:
        raise InvalidArgument(f"{field}: holds a NUL character", field=field)


def _check_time(body: Any, field: str = "at") -> None:
    if body.HasField("at"):
        at = body.at
        if not _MIN_SECONDS <= at.seconds <= _MAX_SECONDS or not 0 <= at.nanos < 1_000_000_000:
            raise InvalidArgument(f"{field}: not a valid time", field=field)


def check_report(kind: str, body: Any) -> None:
    """An Ack, Started or Finished: InvalidArgument naming the field when it is malformed."""
    check_run_id(body.run)
    _check_lease(body.lease)
    if kind == "ack":
        return
    _check_time(body)
    if kind == "finished":
        if body.state not in FINAL:
            name = scheduler_pb2.RunState.Name(body.state) if body.state in scheduler_pb2.RunState.values() else str(body.state)
            raise InvalidArgument(
                f"state: a finished run is COMPLETED, FAILED, CRASHED or CANCELLED, not {name}", field="state"
            )
        _check_text(body.message, "message")


def check_log_line(line: scheduler_pb2.LogLine) -> None:
    check_run_id(line.run)
    if line.stream not in _LOG_STREAMS:
        raise InvalidArgument("stream: stdout or stderr", field="stream")
    _check_text(line.text, "text")
    _check_time(line)


def check_hello(hello: scheduler_pb2.Hello, max_document_bytes: int) -> None:
    """The fields that make the stream's identity and settings; its outcomes and holdings
    are checked one by one where they are settled, so that one bad item is refused alone."""
    validate_name("name", hello.name)
    validate_name("pool", hello.pool)
    if hello.type:
        validate_name("type", hello.type)
        if len(hello.type) > MAX_TYPE:
            raise InvalidArgument(f"type: {len(hello.type)} characters is longer than the limit of {MAX_TYPE}", field="type")
    if len(hello.queues) > MAX_HELLO_QUEUES:
        raise InvalidArgument(
            f"queues: {len(hello.queues)} queues is more than the {MAX_HELLO_QUEUES} a worker may serve", field="queues"
        )
    for index, queue in enumerate(hello.queues):
        validate_name(f"queues[{index}]", queue)
    if hello.limit < 0:
        raise InvalidArgument(f"limit: must be at least 1, got {hello.limit}", field="limit")
    prefetch = hello.prefetch_seconds
    if not (math.isfinite(prefetch) and 0 <= prefetch <= MAX_PREFETCH_SECONDS):
        raise InvalidArgument(
            f"prefetch_seconds: must be between 0 and {MAX_PREFETCH_SECONDS:g} seconds, got {prefetch:g}",
            field="prefetch_seconds",
        )
    if len(hello.holding) > MAX_HELLO_RUNS:
        raise InvalidArgument(f"holding: {len(hello.holding)} runs is more than {MAX_HELLO_RUNS}", field="holding")
    if len(hello.finished) > MAX_HELLO_RUNS:
        raise InvalidArgument(f"finished: {len(hello.finished)} outcomes is more than {MAX_HELLO_RUNS}", field="finished")
    if hello.HasField("base_job_template"):
        problem = refuse(scheduler_pb2.Hello(base_job_template=hello.base_job_template), max_document_bytes)
        if problem is not None:
            raise problem
