"""Provision flow runs seen from outside a run: what the gateway and reconciliation create, and how
reconciliation ends a run Prefect still calls alive.

A session's first run is created under the Prefect idempotency key ``first_run_key`` (the client's
scoped key, or ``provision:<session id>``), so creating it twice (a replayed POST; reconciliation
finishing an accept that died between the row and the run) yields the same run. A re-submission
uses ``provision:<session id>:<n>``: a new run, once.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled, Crashed

PROVISION_DEPLOYMENT = "provision/provision"
NOT_STARTED = frozenset({StateType.SCHEDULED, StateType.PENDING})
FINAL = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED})


def first_run_key(session_id: str, idempotency_key: str | None) -> str:
    return idempotency_key or f"provision:{session_id}"


def resubmission_key(session_id: str, submission: int) -> str:
    return f"provision:{session_id}:{submission}"


def provision_parameters(request: dict[str, Any] | None, session_id: str) -> dict[str, Any]:
    return {"request": request or {}, "session_id": session_id}


def submit_provision(session_id: str, request: dict[str, Any] | None, *, idempotency_key: str) -> str:
    """Create a provision flow run of the deployment and return its id at once."""
    run = run_deployment(
        name=PROVISION_DEPLOYMENT,
        parameters=provision_parameters(request, session_id),
        timeout=0,
        idempotency_key=idempotency_key,
        as_subflow=False,
    )
    return str(run.id)


def end_run(run_id: str, message: str) -> str:
    """A run that has not started is Cancelled; one Prefect calls running (its process is gone, or
    its session ended under it) is Crashed. Returns what was done."""
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(run_id))
        except (ObjectNotFound, ValueError):
            return "no such flow run"
        state = run.state.type if run.state else None
        if state in FINAL:
            return f"already {state.value.lower()}"
        if state in NOT_STARTED or state in (StateType.PAUSED, StateType.CANCELLING):
            client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
            return "cancelled"
        client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        return "crashed"
