"""Provision flow runs seen from outside a run: the parameters and idempotency keys of the runs
the gateway and reconciliation create (through provisioner.prefect_api).

A session's first run is created under the Prefect idempotency key ``first_run_key`` (the client's
scoped key, or ``provision:<session id>``), so creating it twice (a replayed POST; reconciliation
finishing an accept that died between the row and the run) yields the same run. A re-submission
uses ``provision:<session id>:<n>``: a new run, once.
"""

from __future__ import annotations

from typing import Any


def first_run_key(session_id: str, idempotency_key: str | None) -> str:
    return idempotency_key or f"provision:{session_id}"


def resubmission_key(session_id: str, submission: int) -> str:
    return f"provision:{session_id}:{submission}"


def provision_parameters(request: dict[str, Any] | None, session_id: str) -> dict[str, Any]:
    return {"request": request or {}, "session_id": session_id}
