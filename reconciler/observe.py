"""Observation: one query for sessions, one for leases, one Docker call, one Prefect call."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reconciler.model import ContainerView, DeviceView, LeaseView, Observed, RunDetail, SessionView, StrayRun
from runtime import ContainerRuntime
from store import TERMINAL, SessionRow, State
from store import devices as devrepo
from store import repository as repo

FlowRunStates = Callable[[Iterable[str]], dict[str, str | None]]
# (flow run id, state type, its session_id parameter) of every provision run Prefect calls alive.
AliveRuns = Callable[[], list[tuple[str, str, str | None]]]


def _stray_runs(db: Session, alive: list[tuple[str, str, str | None]]) -> list[StrayRun]:
    """Alive provision runs whose session has ended (one query for all of them)."""
    if not alive:
        return []
    run_ids = [run_id for run_id, _, _ in alive]
    named = [sid for _, _, sid in alive if sid]
    rows = db.scalars(
        select(SessionRow).where(SessionRow.flow_run_id.in_(run_ids) | SessionRow.id.in_(named))
    ).all()
    by_id = {row.id: row for row in rows}
    by_run = {row.flow_run_id: row for row in rows if row.flow_run_id}
    strays = []
    for run_id, state, sid in alive:
        row = by_id.get(sid) if sid else by_run.get(run_id)
        if row is not None and State(row.state) in TERMINAL:
            strays.append(StrayRun(run_id, state, row.id, State(row.state), row.updated_at))
    return strays


def observe(
    db: Session,
    runtime: ContainerRuntime,
    flow_run_states: FlowRunStates,
    *,
    run_details: Callable[[], dict[str, RunDetail]] | None = None,
    alive_runs: AliveRuns | None = None,
) -> Observed:
    now = db.scalar(select(func.now()))  # the database's clock, the one timestamps were written with
    devices = [(row, sid) for row, sid in devrepo.list_live_devices(db)]
    activity = {row.id: row.last_activity_at for row, _ in devices}
    sessions = [
        SessionView(
            s.id,
            State(s.state),
            s.flow_run_id,
            s.updated_at,
            s.expires_at,
            bool(s.verification_code),
            heartbeat_at=s.heartbeat_at,
            submissions=s.submissions,
            has_request=s.request is not None,
            device_down_since=s.device_down_since,
            device_id=s.device_id,
            idle_timeout_s=s.idle_timeout_s,
            idle_since=max(t for t in (s.updated_at, activity.get(s.device_id or "")) if t is not None),
        )
        for s in repo.list_nonterminal_sessions(db)
    ]
    leases = [
        LeaseView(x.id, x.session_id, x.provider, x.activation_id, x.outcome, x.requested_at, x.retry_after)
        for x in repo.list_open_leases(db)
    ]
    containers = [
        ContainerView(c.id, c.name, c.device_id, c.role, c.state, c.created_at, health=c.health)
        for c in runtime.list_managed()
    ]
    run_ids = sorted({s.flow_run_id for s in sessions if s.flow_run_id})
    states = flow_run_states(run_ids)
    return Observed(
        now=now,
        sessions=sessions,
        leases=leases,
        containers=containers,
        flow_runs=states,
        run_details=run_details() if run_details else {},
        stray_runs=_stray_runs(db, alive_runs()) if alive_runs else [],
        devices=[DeviceView(d.id, d.state, d.profile, sid, d.health, d.health_since) for d, sid in devices],
    )
