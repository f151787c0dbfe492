"""Reconciliation tasks: observe, then act on the plan; the flow run's states come from Prefect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from provisioning.deps import get_deps
from reconciler import Action, ActionResult, Observed, act, observe

FLOW_RUN_PAGE = 200  # PREFECT_SERVER_API_DEFAULT_LIMIT: the most runs one read_flow_runs may return


def read_flow_run_states(run_ids: Iterable[str]) -> dict[str, str | None]:
    """State types of the given flow runs, one API call per 200; runs that do not exist map to None."""
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
    return states


@task(name="observe", cache_policy=NONE)
def observe_world() -> Observed:
    deps = get_deps()
    with deps.sessions() as db:
        observed = observe(db, deps.runtime, read_flow_run_states)
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
