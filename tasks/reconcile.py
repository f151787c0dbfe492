"""Reconciliation tasks: observe, then act on the plan; the flow run's states come from Prefect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
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

from provisioner.reconciler import Action, ActionResult, Observed, act, observe
from provisioner.reconciler.model import FLOW_RUN_ALIVE, RunDetail
from provisioner.steps.deps import get_deps

FLOW_RUN_PAGE = 200  # PREFECT_SERVER_API_DEFAULT_LIMIT: the most runs one read_flow_runs may return


class FlowRunReader:
    """Prefect's side of one observation: the states of the sessions' runs (with when they entered
    them and their messages), and every provision run Prefect calls alive (to find strays)."""

    def __init__(self) -> None:
        self.details: dict[str, RunDetail] = {}

    def states(self, run_ids: Iterable[str]) -> dict[str, str | None]:
        return read_flow_run_states(run_ids, details=self.details)

    def alive_provision_runs(self) -> list[tuple[str, str, str | None]]:
        alive = [StateType(name) for name in sorted(FLOW_RUN_ALIVE)]
        flow_filter = FlowFilter(name=FlowFilterName(any_=["provision"]))
        run_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=alive)))
        found: list[tuple[str, str, str | None]] = []
        with get_client(sync_client=True) as client:
            offset = 0
            while True:
                page = client.read_flow_runs(
                    flow_filter=flow_filter, flow_run_filter=run_filter, limit=FLOW_RUN_PAGE, offset=offset
                )
                for run in page:
                    sid = (run.parameters or {}).get("session_id")
                    found.append((str(run.id), run.state.type.value if run.state else "PENDING", sid or None))
                if len(page) < FLOW_RUN_PAGE:
                    return found
                offset += FLOW_RUN_PAGE


def _detail(run: FlowRun) -> RunDetail:
    state = run.state
    return RunDetail(since=state.timestamp if state else None, message=state.message if state else None)


def read_flow_run_states(
    run_ids: Iterable[str], *, details: dict[str, RunDetail] | None = None
) -> dict[str, str | None]:
    """State types of the given flow runs, one API call per 200; runs that do not exist map to None.
    ``details`` (when given) is filled with when each run entered its state and the state's message."""
    ids = list(run_ids)
    states: dict[str, str | None] = dict.fromkeys(ids)
    valid = []
    for run_id in ids:
        with contextlib.suppress(ValueError):  # not a Prefect id (e.g. "local"): it cannot be running
            valid.append(UUID(run_id))
    if not valid:
        return states
    with get_client(sync_client=True) as client:
        # The API refuses a limit above its default page size (200): one call per page of ids.
        for start in range(0, len(valid), FLOW_RUN_PAGE):
            page = valid[start : start + FLOW_RUN_PAGE]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)), limit=len(page)
            )
            for run in runs:
                states[str(run.id)] = run.state.type.value if run.state else None
                if details is not None:
                    details[str(run.id)] = _detail(run)
    return states


@task(name="observe", cache_policy=NONE)
def observe_world() -> Observed:
    deps = get_deps()
    with deps.sessions() as db:
        reader = FlowRunReader()
        observed = observe(
            db,
            deps.runtime,
            reader.states,
            run_details=lambda: reader.details,
            alive_runs=reader.alive_provision_runs,
        )
    get_run_logger().info(
        "observed %d live sessions, %d open leases, %d containers",
        len(observed.sessions),
        len(observed.leases),
        len(observed.containers),
    )
    return observed


@task(name="act", cache_policy=NONE)
def act_on(actions: list[Action], *, actor: str) -> list[ActionResult]:
    results = act(get_deps(), actions, actor=actor)
    logger = get_run_logger()
    for r in results:
        (logger.info if r.ok else logger.error)(
            "%s %s (%s): %s", r.action.kind, r.action.target, r.action.reason, r.result
        )
    return results
