"""Session store operations. Each takes a SQLAlchemy Session and never commits: the caller owns
the transaction (``with sessionmaker.begin() as db:``), so a transition and its event land together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from provisioner.store.models import PREFECT_OWNER, EventRow, SessionRow
from provisioner.store.states import ENDING, TERMINAL, State, check_transition


class SessionNotFound(LookupError):
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"no session {session_id!r}")


class SessionEnded(Exception):
    """The session reached a terminal state (another actor ended it); no more work may start for it."""

    def __init__(self, session_id: str, state: str) -> None:
        self.session_id = session_id
        self.state = state
        super().__init__(f"session {session_id} already ended ({state}); start a new provision")

    def __reduce__(self):  # picklable, for Prefect's state results
        return (type(self), (self.session_id, self.state))


def ensure_not_ended(db: Session, session_id: str) -> SessionRow:
    """The session, or SessionEnded when it has ended or is being released (so no number is bought
    and no container started for a session on its way out)."""
    row = get_session(db, session_id)
    if State(row.state) in ENDING:
        raise SessionEnded(session_id, row.state)
    return row


class StaleState(Exception):
    """The session is no longer in the state the caller expected (another actor moved it)."""

    def __init__(self, session_id: str, expected: State, actual: State) -> None:
        self.session_id = session_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"session {session_id}: expected state {expected}, found {actual}")


# Columns a transition may set alongside the state.
_SESSION_FIELDS = frozenset(
    {
        "provider",
        "phone_number",
        "verification_code",
        "device_container",
        "stream_container",
        "stream_url",
        "flow_run_id",
        "ready_at",
        "expires_at",
        "last_error",
        "idle_timeout_s",
    }
)


def create_session(
    db: Session,
    *,
    service: str,
    country: str,
    actor: str,
    device_profile: str = "stub",
    flow_run_id: str | None = None,
    ttl: timedelta | None = None,
    session_id: str | None = None,
    request: dict[str, Any] | None = None,
    requested_by: str | None = None,
    idempotency_key: str | None = None,
    idle_timeout_s: float | None = None,
    owner: str = PREFECT_OWNER,
) -> SessionRow:
    """Insert a session in state requested, with its first event; ``owner`` is the client that
    asked (``prefect`` for runs started from Prefect's UI or API)."""
    row = SessionRow(
        owner=owner,
        service=service,
        country=country,
        device_profile=device_profile,
        flow_run_id=flow_run_id,
        state=State.REQUESTED.value,
        request=request,
        requested_by=requested_by,
        idempotency_key=idempotency_key,
        submissions=1 if flow_run_id else 0,
        idle_timeout_s=idle_timeout_s,
    )
    if session_id is not None:
        row.id = session_id
    db.add(row)
    db.flush()
    if ttl is not None:
        row.expires_at = db.scalar(select(func.now())) + ttl
    db.add(
        EventRow(
            session_id=row.id, from_state=None, to_state=State.REQUESTED.value, reason="created", actor=actor
        )
    )
    db.flush()
    return row


def get_session(db: Session, session_id: str, *, for_update: bool = False) -> SessionRow:
    stmt = select(SessionRow).where(SessionRow.id == session_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = db.scalars(stmt).one_or_none()
    if row is None:
        raise SessionNotFound(session_id)
    return row


def find_session(db: Session, session_id: str) -> SessionRow | None:
    return db.get(SessionRow, session_id)


def find_by_idempotency_key(db: Session, key: str) -> SessionRow | None:
    return db.scalars(select(SessionRow).where(SessionRow.idempotency_key == key)).one_or_none()


def find_by_flow_run(db: Session, flow_run_id: str) -> SessionRow | None:
    """The session a flow run owns (a flow run owns at most one)."""
    stmt = select(SessionRow).where(SessionRow.flow_run_id == flow_run_id).order_by(SessionRow.created_at)
    return db.scalars(stmt.limit(1)).first()


def record_submission(db: Session, session_id: str, flow_run_id: str) -> SessionRow:
    """A provision flow run was created for the session: it is now the one in charge."""
    row = get_session(db, session_id, for_update=True)
    if row.flow_run_id != flow_run_id:
        row.flow_run_id = flow_run_id
        row.submissions += 1
        row.updated_at = func.now()
    db.flush()
    return row


def transition(
    db: Session,
    session_id: str,
    to_state: State,
    *,
    reason: str,
    actor: str,
    expected: State | None = None,
    **fields: Any,
) -> SessionRow:
    """Move a session to ``to_state`` if the state table allows it, writing the event in the same
    transaction. The row is locked first, so two concurrent transitions serialize and the second
    is validated against the state the first left behind.
    """
    unknown = set(fields) - _SESSION_FIELDS
    if unknown:
        raise TypeError(f"transition() cannot set {sorted(unknown)}")
    row = get_session(db, session_id, for_update=True)
    current = State(row.state)
    if expected is not None and current != expected:
        raise StaleState(session_id, expected, current)
    check_transition(session_id, current, to_state)
    for name, value in fields.items():
        setattr(row, name, value)
    row.state = to_state.value
    row.version += 1
    row.updated_at = func.now()
    db.add(
        EventRow(
            session_id=session_id,
            from_state=current.value,
            to_state=to_state.value,
            reason=reason,
            actor=actor,
        )
    )
    db.flush()
    return row


def update_session(db: Session, session_id: str, **fields: Any) -> SessionRow:
    """Set fields without a state change (e.g. the stream URL of a healed stream)."""
    unknown = set(fields) - _SESSION_FIELDS
    if unknown:
        raise TypeError(f"update_session() cannot set {sorted(unknown)}")
    row = get_session(db, session_id, for_update=True)
    for name, value in fields.items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = func.now()
    db.flush()
    return row


def touch_heartbeat(db: Session, session_id: str) -> None:
    """Mark the session's provision process as alive (no version bump: not a change of substance)."""
    db.execute(update(SessionRow).where(SessionRow.id == session_id).values(heartbeat_at=func.now()))


def record_event(db: Session, session_id: str, *, reason: str, actor: str) -> None:
    """A note in the log without a state change (a healed stream, a retried cancel)."""
    state = db.scalar(select(SessionRow.state).where(SessionRow.id == session_id))
    db.add(
        EventRow(session_id=session_id, from_state=state, to_state=state or "", reason=reason, actor=actor)
    )
    db.flush()


def list_sessions(
    db: Session, *, limit: int = 100, states: Sequence[State] | None = None, owner: str | None = None
) -> list[SessionRow]:
    """Newest first; only ``owner``'s when given."""
    stmt = select(SessionRow).order_by(SessionRow.created_at.desc()).limit(limit)
    if states:
        stmt = stmt.where(SessionRow.state.in_([s.value for s in states]))
    if owner is not None:
        stmt = stmt.where(SessionRow.owner == owner)
    return list(db.scalars(stmt))


def live_sessions_of(db: Session, owner: str) -> list[SessionRow]:
    """The owner's sessions that have not ended (they count against its limit)."""
    stmt = select(SessionRow).where(
        SessionRow.owner == owner, SessionRow.state.not_in([s.value for s in TERMINAL])
    )
    return list(db.scalars(stmt))


def sessions_started_since(db: Session, owner: str, window: timedelta) -> list[datetime]:
    """When the owner's sessions of the last ``window`` were created, oldest first."""
    stmt = (
        select(SessionRow.created_at)
        .where(SessionRow.owner == owner, SessionRow.created_at > func.now() - window)
        .order_by(SessionRow.created_at)
    )
    return list(db.scalars(stmt))


def list_nonterminal_sessions(db: Session) -> list[SessionRow]:
    """Every session that is not finished: one round trip."""
    stmt = (
        select(SessionRow).where(SessionRow.state.not_in([s.value for s in TERMINAL])).order_by(SessionRow.id)
    )
    return list(db.scalars(stmt))


def session_states(db: Session, session_ids: Sequence[str]) -> dict[str, State]:
    """States of the given sessions, one round trip (ids not found are absent)."""
    if not session_ids:
        return {}
    rows = db.execute(select(SessionRow.id, SessionRow.state).where(SessionRow.id.in_(list(session_ids))))
    return {sid: State(state) for sid, state in rows}


def recent_events(db: Session, session_id: str, *, limit: int = 20) -> list[EventRow]:
    stmt = select(EventRow).where(EventRow.session_id == session_id).order_by(EventRow.id.desc()).limit(limit)
    return list(reversed(list(db.scalars(stmt))))


# --- leases -------------------------------------------------------------------------------------
