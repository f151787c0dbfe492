"""Flow runs on Prefect's sync client: created from a deployment, read, ended and labelled."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment, flow_run
from prefect.states import Cancelled, Cancelling, Crashed

from provisioner.prefect_api.names import LAUNCH_DEPLOYMENT

log = logging.getLogger(__name__)

NOT_STARTED = frozenset({StateType.SCHEDULED, StateType.PENDING})
FINAL = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED})
FLOW_RUN_PAGE = 200  # PREFECT_SERVER_API_DEFAULT_LIMIT: the most runs one read_flow_runs may return


def in_deployment_run() -> bool:
    """Whether this code runs in a flow run started from a deployment (a worker serves those)."""
    return deployment.id is not None


def current_run_id() -> str | None:
    return str(flow_run.id) if flow_run.id else None


# -- creating runs ----------------------------------------------------------------------------------


def submit_provision(deployment: str, parameters: dict[str, Any], *, idempotency_key: str) -> str:
    """Create a provision flow run of ``deployment`` and return its id at once."""
    run = run_deployment(
        name=deployment,
        parameters=parameters,
        timeout=0,
        idempotency_key=idempotency_key,
        as_subflow=False,
    )
    return str(run.id)


def run_launch(
    device_id: str, *, reason: str, host: str, queue: str, wait_s: float, poll_s: float
) -> FlowRun:
    """Run the device's launch-device deployment on work queue ``queue`` and wait up to ``wait_s``
    for its final state, reading it every ``poll_s``; returns the run as last read."""
    return run_deployment(
        LAUNCH_DEPLOYMENT,
        parameters={"device_id": device_id, "reason": reason},
        flow_run_name=f"launch-{device_id}",
        work_queue_name=queue,
        timeout=wait_s,
        poll_interval=poll_s,
        idempotency_key=f"launch:{device_id}",
        tags=["provisioner", f"host:{host}", f"device:{device_id}"],
        as_subflow=False,
    )


# -- ending runs ------------------------------------------------------------------------------------


def end_run(run_id: str, message: str, *, dead: bool = False) -> str:
    """A run that has not started is Cancelled; one Prefect calls running (its process is gone, or
    its session ended under it) is Crashed; a ``dead`` run (reconciliation's verdict: its worker or
    process is gone) is Crashed whatever its state. Either frees its deployment concurrency slot.
    Returns what was done."""
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(run_id))
        except (ObjectNotFound, ValueError):
            return "no such flow run"
        state = run.state.type if run.state else None
        if state in FINAL:
            return f"already {state.value.lower()}"
        if not dead and (state in NOT_STARTED or state in (StateType.PAUSED, StateType.CANCELLING)):
            client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
            return "cancelled"
        client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        return "crashed"


def run_alive(run_id: str) -> bool:
    """Whether Prefect calls the flow run alive (not in a final state); an unknown run is not."""
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(run_id))
        except (ObjectNotFound, ValueError):
            return False
    return run.state is None or run.state.type not in FINAL


def cancel_run(run_id: UUID, message: str) -> str:
    """Stop a run that is not final (a started one through its worker: Cancelling); returns the
    state type it ended in or had."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        state = run.state
        if state is not None and state.is_final():
            return state.type.value
        started = state is not None and (state.is_running() or state.is_pending())
        client.set_flow_run_state(
            run_id, (Cancelling if started else Cancelled)(message=message[:500]), force=True
        )
        return "CANCELLING" if started else "CANCELLED"


def cancel_requested() -> bool:
    """Whether the current flow run was cancelled through the API (cooperative cancellation).

    A Prefect API that does not answer is not a cancel: the run goes on (its session is worth more
    than the question) and the caller asks again at its next check."""
    if not flow_run.id:
        return False
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run.id).state
    except (httpx.HTTPError, OSError) as exc:  # PrefectHTTPStatusError is an httpx.HTTPError
        log.warning("could not ask the Prefect API whether run %s was cancelled: %s", flow_run.id, exc)
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())


def label_current_run(name: str, tag: str) -> None:
    """Name the current flow run and add ``tag`` to its tags (kept); nothing outside a run."""
    if not flow_run.id:
        return
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        tags = [*run.tags, tag]
        client.update_flow_run(flow_run.id, name=name, tags=list(dict.fromkeys(tags)))


# -- reading runs -----------------------------------------------------------------------------------


def read_flow_runs(run_ids: Iterable[str]) -> dict[str, FlowRun | None]:
    """The given flow runs, one API call per 200; ids that are not runs map to None."""
    ids = list(run_ids)
    found: dict[str, FlowRun | None] = dict.fromkeys(ids)
    valid = []
    for run_id in ids:
        with contextlib.suppress(ValueError):  # not a Prefect id (e.g. "local"): it cannot be running
            valid.append(UUID(run_id))
    if not valid:
        return found
    with get_client(sync_client=True) as client:
        # The API refuses a limit above its default page size (200): one call per page of ids.
        for start in range(0, len(valid), FLOW_RUN_PAGE):
            page = valid[start : start + FLOW_RUN_PAGE]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)), limit=len(page)
            )
            for run in runs:
                found[str(run.id)] = run
    return found


def runs_of_flow_in(flow_name: str, states: Iterable[StateType]) -> list[FlowRun]:
    """Every run of ``flow_name`` in one of ``states``, paged."""
    flow_filter = FlowFilter(name=FlowFilterName(any_=[flow_name]))
    run_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))))
    found: list[FlowRun] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_flow_runs(
                flow_filter=flow_filter, flow_run_filter=run_filter, limit=FLOW_RUN_PAGE, offset=offset
            )
            found.extend(page)
            if len(page) < FLOW_RUN_PAGE:
                return found
            offset += FLOW_RUN_PAGE
