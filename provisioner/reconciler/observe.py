"""Observation: one query each for the clock, devices, sessions and leases, per engine one
container list and one network list call, with the egress guard one netguard run listing its
rules (made while the database is read), one Prefect call.

Only the columns the plan uses are selected (no ORM objects: a pass reads every live row)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioner.reconciler.model import (
    ContainerView,
    DeviceView,
    LeaseView,
    NetworkView,
    Observed,
    RunDetail,
    SessionView,
    StrayRun,
)
from provisioner.runtime import Runtime
from provisioner.runtime.model import Inventory
from provisioner.store import OPEN_LEASE_OUTCOMES, TERMINAL, DeviceRow, LeaseRow, SessionRow, State
from provisioner.store.device_states import DEVICE_TERMINAL

FlowRunStates = Callable[[Iterable[str]], dict[str, str | None]]
# (flow run id, state type, its session_id parameter) of every provision run Prefect calls alive.
AliveRuns = Callable[[], list[tuple[str, str, str | None]]]

_lister: ThreadPoolExecutor | None = None  # lists the engines while the database is read
_lister_lock = threading.Lock()


def _in_background(fn: Callable[[], Inventory]):  # noqa: ANN202 - a Future[Inventory]
    global _lister
    with _lister_lock:
        if _lister is None:
            _lister = ThreadPoolExecutor(max_workers=2, thread_name_prefix="observe")
        return _lister.submit(fn)


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
    runtime: Runtime,
    flow_run_states: FlowRunStates,
    *,
    run_details: Callable[[], dict[str, RunDetail]] | None = None,
    alive_runs: AliveRuns | None = None,
) -> Observed:
    listing = _in_background(runtime.inventory)
    now = db.scalar(select(func.now()))  # the database's clock, the one timestamps were written with
    devices = db.execute(
        select(
            DeviceRow.id,
            DeviceRow.state,
            DeviceRow.profile,
            SessionRow.id,
            DeviceRow.down_since,
            DeviceRow.down_condition,
            DeviceRow.host,
            DeviceRow.last_activity_at,
            DeviceRow.stream_route.is_not(None).label("routed"),
        )
        .outerjoin(SessionRow, SessionRow.device_id == DeviceRow.id)
        .where(DeviceRow.state.not_in([s.value for s in DEVICE_TERMINAL]))
        .order_by(DeviceRow.created_at, DeviceRow.id)
    ).all()
    activity = {d.id: d.last_activity_at for d in devices}
    sessions = [
        SessionView(
            s.id,
            State(s.state),
            s.flow_run_id,
            s.updated_at,
            s.expires_at,
            s.has_code,
            heartbeat_at=s.heartbeat_at,
            submissions=s.submissions,
            has_request=s.has_request,
            device_id=s.device_id,
            idle_timeout_s=s.idle_timeout_s,
            idle_since=max(t for t in (s.updated_at, activity.get(s.device_id or "")) if t is not None),
            device_ended_at=s.device_ended_at,
        )
        for s in db.execute(
            select(
                SessionRow.id,
                SessionRow.state,
                SessionRow.flow_run_id,
                SessionRow.updated_at,
                SessionRow.expires_at,
                SessionRow.verification_code.is_not(None).label("has_code"),
                SessionRow.heartbeat_at,
                SessionRow.submissions,
                # An ORM None is stored as JSON null, not SQL NULL: only the gateway writes an object.
                func.coalesce(func.jsonb_typeof(SessionRow.request) == "object", False).label("has_request"),
                SessionRow.device_id,
                SessionRow.idle_timeout_s,
                DeviceRow.ended_at.label("device_ended_at"),
            )
            .outerjoin(DeviceRow, DeviceRow.id == SessionRow.device_id)
            .where(SessionRow.state.not_in([s.value for s in TERMINAL]))
            .order_by(SessionRow.id)
        )
    ]
    leases = [
        LeaseView(*row)
        for row in db.execute(
            select(
                LeaseRow.id,
                LeaseRow.session_id,
                LeaseRow.provider,
                LeaseRow.activation_id,
                LeaseRow.outcome,
                LeaseRow.requested_at,
                LeaseRow.retry_after,
            )
            .where(LeaseRow.outcome.in_([o.value for o in OPEN_LEASE_OUTCOMES]))
            .order_by(LeaseRow.id)
        )
    ]
    run_ids = sorted({s.flow_run_id for s in sessions if s.flow_run_id})
    states = flow_run_states(run_ids)
    found: Inventory = listing.result()
    return Observed(
        now=now,
        sessions=sessions,
        leases=leases,
        containers=[
            ContainerView(c.id, c.name, c.device_id, c.role, c.state, c.created_at, health=c.health)
            for c in found.containers
        ],
        flow_runs=states,
        run_details=run_details() if run_details else {},
        stray_runs=_stray_runs(db, alive_runs()) if alive_runs else [],
        devices=[
            DeviceView(
                d[0], d.state, d.profile, d[3], d.down_since, d.down_condition, host=d.host, routed=d.routed
            )
            for d in devices
        ],
        networks=[NetworkView(n.name, n.device_id, n.created_at, n.guarded) for n in found.networks],
        stray_guards=found.stray_guards,
        down_hosts=found.down,
        late_hosts=found.late,
    )
