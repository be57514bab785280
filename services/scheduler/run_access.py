"""What a run token may touch: its own run, while the lease it was issued for is current.

A flow process is given its run's token in place of the worker's key (services/sealing.py
signs it, services/auth.py admits it to the RPCs the contract marks `run_token`). Each of
those RPCs asks here: a token reaches its own run only, reports only the states a flow
reaches by itself, and stops working once its run has ended or been leased again.
"""

from __future__ import annotations

from typing import Any

from shiftboss.errors import PermissionDenied, Unauthenticated
from shiftboss.services.auth import run_scope
from shiftboss.services.scheduler import runs as run_store
from shiftboss.services.scheduler import states

#: States a flow may report of itself with its run token.
SELF_REPORTED = frozenset({states.RUNNING, states.COMPLETED, states.FAILED, states.CRASHED})


async def check_own_run(db: Any, run_id: str, *, to: str | None = None, force: bool = False) -> bool:
    """Refuse a run token used on another run, after its run ended, or for a state or a
    force a flow may not set; True when the caller holds a run token (and may go on)."""
    scope = run_scope()
    if scope is None:
        return False
    own, lease = scope
    if run_id != own:
        raise PermissionDenied("id: a run token reaches its own flow run only", field="id")
    if force:
        raise PermissionDenied("force: a run token follows the transition rules", field="force")
    if to is not None and to not in SELF_REPORTED:
        raise PermissionDenied(
            f"state: a run token may report {', '.join(sorted(SELF_REPORTED))}, not {to}", field="state"
        )
    async with db.reading() as session:
        run = await run_store.get(session, run_id)
    if run.lease != lease or run.state in states.TERMINAL:
        raise Unauthenticated(f"the run token of flow run {run_id!r} is no longer valid: the run has ended or was leased again")
    return True
