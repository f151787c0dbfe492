"""Observations for the plan tests: a fixed clock and policy, and builders of the sessions,
containers, leases and devices one reconcile pass would observe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provisioner.reconciler import Kind, Observed, Policy
from provisioner.reconciler.model import ContainerView, DeviceView, LeaseView, SessionView
from provisioner.store import LeaseOutcome, State

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)
DEADLINE = timedelta(seconds=120)
STALE = timedelta(seconds=90)
DEVICE_GRACE = timedelta(seconds=60)
UNHEALTHY = timedelta(seconds=30)
START_DEADLINE = timedelta(seconds=300)
PENDING_DEADLINE = timedelta(seconds=60)
POLICY = Policy(
    grace=GRACE,
    provisioning_deadline=DEADLINE,
    stale_after=STALE,
    device_grace=DEVICE_GRACE,
    run_start_deadline=START_DEADLINE,
    run_pending_deadline=PENDING_DEADLINE,
    unhealthy_grace=UNHEALTHY,
)
TICK = timedelta(microseconds=1)
SID = "sabcdefghijk"
RUN = "0b1c2d3e-0000-4000-8000-000000000001"


def session(
    state: State,
    *,
    sid: str = SID,
    run: str | None = RUN,
    age: timedelta = timedelta(hours=1),
    heartbeat_age: timedelta | None = timedelta(seconds=1),
    expires_in: timedelta | None = timedelta(hours=1),
    submissions: int = 1,
    has_request: bool = False,
) -> SessionView:
    return SessionView(
        id=sid,
        state=state,
        flow_run_id=run,
        updated_at=NOW - age,
        expires_at=NOW + expires_in if expires_in is not None else None,
        has_code=state == State.VERIFIED,
        heartbeat_at=NOW - heartbeat_age if heartbeat_age is not None else None,
        submissions=submissions,
        has_request=has_request,
        device_id=sid,  # in these tables each session holds the device of the same id
    )


def container(role: str, state: str = "running", *, sid: str = SID, age: timedelta | None = GRACE * 10):
    return ContainerView(
        id=f"id-{sid}-{role}",
        name=f"prov-t-{sid}-{role}",
        device_id=sid,
        role=role,
        state=state,
        created_at=NOW - age if age is not None else None,
    )


def both(sid: str = SID) -> list[ContainerView]:
    return [container("device", sid=sid), container("stream", sid=sid)]


def lease(
    outcome: LeaseOutcome,
    *,
    sid: str = SID,
    activation: str | None = "1001",
    age: timedelta = timedelta(hours=1),
    retry_after: datetime | None = None,
    lease_id: int = 7,
) -> LeaseView:
    return LeaseView(lease_id, sid, "sms_activate", activation, outcome, NOW - age, retry_after)


def observed(sessions=(), containers=(), leases=(), runs=None, down=None) -> Observed:
    """Each session holds its claimed device (same id); ``down``: session id -> (down for, as what)
    recorded on its device."""
    down = down or {}
    return Observed(
        now=NOW,
        sessions=list(sessions),
        leases=list(leases),
        containers=list(containers),
        flow_runs={RUN: "RUNNING"} if runs is None else runs,
        devices=[device(s.id, holder=s.id, down=down.get(s.id)) for s in sessions if s.device_id],
    )


def device(
    sid: str = SID,
    *,
    state: str = "claimed",
    holder: str | None = SID,
    down: tuple[timedelta, str] | None = None,  # recorded down for this long, as this condition
) -> DeviceView:
    since, condition = (NOW - down[0], down[1]) if down else (None, None)
    return DeviceView(sid, state, "stub", holder, since, condition)


def mixed_world() -> Observed:
    """One session or lease for each kind of problem, and one healthy session."""
    healthy, heal, orphan, dead, old = (
        "shealthy2345",
        "sheal2345678",
        "sorphan23456",
        "sdead2345678",
        "sold23456789",
    )
    sessions = [
        session(State.VERIFIED, sid=healthy),
        session(State.VERIFIED, sid=heal),
        session(State.AWAITING_CODE, sid=orphan),
        session(State.LAUNCHING, sid=dead, heartbeat_age=STALE),
        session(State.VERIFIED, sid=old, expires_in=-TICK),
    ]
    containers = [*both(healthy), container("device", sid=heal), container("stream", sid=orphan)]
    containers += [*both(old), container("device", sid="sgone2345678")]
    leases = [
        lease(LeaseOutcome.CODE_RECEIVED, sid="sgone2345678", lease_id=1),
        lease(LeaseOutcome.PENDING, sid="sgone2345678", activation=None, lease_id=2),
        lease(LeaseOutcome.ACTIVE, sid=dead, lease_id=3),
    ]
    return observed(sessions, containers, leases, down={orphan: (DEVICE_GRACE, "missing")})


# Its plan, in plan()'s order: session rules first, then containers, then leases.
MIXED_WORLD_PLAN = [
    (Kind.HEAL_STREAM, "sheal2345678"),
    (Kind.ORPHAN_SESSION, "sorphan23456"),
    (Kind.COMPENSATE_SESSION, "sdead2345678"),
    (Kind.EXPIRE_SESSION, "sold23456789"),
    (Kind.REMOVE_CONTAINER, "prov-t-sgone2345678-device"),
    (Kind.CLOSE_LEASE, "lease 1"),
    (Kind.RESOLVE_PENDING_LEASE, "lease 2"),
]
