"""Reconciliation tasks: observe, then act on the plan; the flow run's states come from Prefect."""

from __future__ import annotations

from collections.abc import Iterable

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.client.schemas.objects import FlowRun, StateType

from provisioner.prefect_api.runs import read_flow_runs, runs_of_flow_in
from provisioner.reconciler import Action, ActionResult, Observed, act, observe
from provisioner.reconciler.model import FLOW_RUN_ALIVE, RunDetail
from provisioner.steps.deps import get_deps


class FlowRunReader:
    """Prefect's side of one observation: the states of the sessions' runs (with when they entered
    them and their messages), and every provision run Prefect calls alive (to find strays)."""

    def __init__(self) -> None:
        self.details: dict[str, RunDetail] = {}

    def states(self, run_ids: Iterable[str]) -> dict[str, str | None]:
        return read_flow_run_states(run_ids, details=self.details)

    def alive_provision_runs(self) -> list[tuple[str, str, str | None]]:
        alive = [StateType(name) for name in sorted(FLOW_RUN_ALIVE)]
        return [
            (
                str(run.id),
                run.state.type.value if run.state else "PENDING",
                (run.parameters or {}).get("session_id") or None,
            )
            for run in runs_of_flow_in("provision", alive)
        ]


def _detail(run: FlowRun) -> RunDetail:
    state = run.state
    return RunDetail(
        since=state.timestamp if state else None,
        message=state.message if state else None,
        started=run.run_count > 0,  # counted on entering Running; start_time is set by a Crashed too
    )


def read_flow_run_states(
    run_ids: Iterable[str], *, details: dict[str, RunDetail] | None = None
) -> dict[str, str | None]:
    """State types of the given flow runs, one API call per 200; runs that do not exist map to None.
    ``details`` (when given) is filled with when each run entered its state and the state's message."""
    states: dict[str, str | None] = {}
    for run_id, run in read_flow_runs(run_ids).items():
        states[run_id] = run.state.type.value if run is not None and run.state else None
        if run is not None and details is not None:
            details[run_id] = _detail(run)
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
