"""Codes in the store: write a code into its lease exactly once and notify, watcher heartbeats.

Each function takes a SQLAlchemy Session and never commits (the caller owns the transaction).
Outcome changes here are conditional UPDATEs whose WHERE names the from-outcome; each is checked
against the lease table (store/lease_states.py) first. The
NOTIFY of a recorded code is sent in the same transaction, so PostgreSQL delivers it at commit:
a listener that wakes up always finds the code in the row.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from provisioner.store.lease_states import check_lease_transition
from provisioner.store.models import CodeWatcherRow, LeaseOutcome, LeaseRow, SessionRow
from provisioner.store.repository import record_event

CHANNEL_PREFIX = "lease_code_"


def channel(lease_id: int) -> str:
    """The NOTIFY channel of one lease: a waiting flow LISTENs only to its own."""
    return f"{CHANNEL_PREFIX}{int(lease_id)}"


@dataclass(frozen=True)
class WaitingLease:
    id: int
    session_id: str
    activation_id: str


def waiting_leases(db: Session, provider: str) -> list[WaitingLease]:
    """Leases of ``provider`` waiting for a code (bought, no code yet): one round trip."""
    rows = db.execute(
        select(LeaseRow.id, LeaseRow.session_id, LeaseRow.activation_id)
        .where(
            LeaseRow.provider == provider,
            LeaseRow.outcome == LeaseOutcome.ACTIVE.value,
            LeaseRow.activation_id.is_not(None),
        )
        .order_by(LeaseRow.id)
    )
    return [WaitingLease(lease_id, sid, aid) for lease_id, sid, aid in rows]


def lease_for_activation(db: Session, provider: str, activation_id: str) -> int | None:
    """The lease holding ``activation_id`` at ``provider``, newest first (ids are per provider)."""
    return db.scalar(
        select(LeaseRow.id)
        .where(LeaseRow.provider == provider, LeaseRow.activation_id == activation_id)
        .order_by(LeaseRow.id.desc())
        .limit(1)
    )


def record_code(db: Session, lease_id: int, code: str, *, via: str, actor: str) -> bool:
    """Write ``code`` into a waiting lease, the session and its event log, and NOTIFY the lease.

    One conditional UPDATE decides: only a lease still waiting (``active``) whose previous code
    (after "another code" was asked) differs takes it. False when it did not (a duplicate webhook,
    a watcher and a flow racing, an ended lease): nothing is written then.
    """
    check_lease_transition(lease_id, LeaseOutcome.ACTIVE, LeaseOutcome.CODE_RECEIVED)  # the WHERE below
    row = db.execute(
        update(LeaseRow)
        .where(
            LeaseRow.id == lease_id,
            LeaseRow.outcome == LeaseOutcome.ACTIVE.value,
            LeaseRow.code.is_distinct_from(code),
        )
        .values(
            outcome=LeaseOutcome.CODE_RECEIVED.value,
            code=code,
            code_at=func.now(),
            provider_status=f"code received ({via})",
            retry_after=None,
        )
        .returning(LeaseRow.session_id, LeaseRow.provider, LeaseRow.activation_id),
        execution_options={"synchronize_session": False},
    ).one_or_none()
    if row is None:
        return False
    session_id, provider, activation_id = row
    db.execute(
        update(SessionRow)
        .where(SessionRow.id == session_id)
        .values(verification_code=code, version=SessionRow.version + 1, updated_at=func.now()),
        execution_options={"synchronize_session": False},
    )
    record_event(db, session_id, reason=f"code received on {provider}:{activation_id} ({via})", actor=actor)
    notify(db, lease_id)
    return True


def record_end(db: Session, lease_id: int, outcome: LeaseOutcome, status: str) -> bool:
    """The provider ended a waiting lease (cancelled, expired): write it once and NOTIFY."""
    check_lease_transition(lease_id, LeaseOutcome.ACTIVE, outcome)  # the WHERE below
    done = db.execute(
        update(LeaseRow)
        .where(LeaseRow.id == lease_id, LeaseRow.outcome == LeaseOutcome.ACTIVE.value)
        .values(outcome=outcome.value, provider_status=status[:200], closed_at=func.now())
        .returning(LeaseRow.id),
        execution_options={"synchronize_session": False},
    ).one_or_none()
    if done is None:
        return False
    notify(db, lease_id)
    return True


def reopen_for_another_code(db: Session, lease_id: int, *, activation_id: str | None = None) -> bool:
    """A lease that got a code waits for the next one (its code is kept to tell the next apart);
    ``activation_id`` when the provider moved the next SMS to a new operation (OnlineSim)."""
    values: dict[str, object] = {
        "outcome": LeaseOutcome.ACTIVE.value,
        "provider_status": "another code requested",
    }
    check_lease_transition(lease_id, LeaseOutcome.CODE_RECEIVED, LeaseOutcome.ACTIVE)  # the WHERE below
    if activation_id:
        values["activation_id"] = activation_id
    done = db.execute(
        update(LeaseRow)
        .where(LeaseRow.id == lease_id, LeaseRow.outcome == LeaseOutcome.CODE_RECEIVED.value)
        .values(**values)
        .returning(LeaseRow.id),
        execution_options={"synchronize_session": False},
    ).one_or_none()
    return done is not None


def note_waiting(db: Session, lease_id: int, status: str) -> None:
    """Keep the provider's last word on a lease still waiting (never overwrites a recorded code)."""
    db.execute(
        update(LeaseRow)
        .where(LeaseRow.id == lease_id, LeaseRow.outcome == LeaseOutcome.ACTIVE.value)
        .values(provider_status=status[:200]),
        execution_options={"synchronize_session": False},
    )


def notify(db: Session, lease_id: int) -> None:
    db.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel(lease_id), "payload": str(lease_id)}
    )


# --- watcher heartbeats ---------------------------------------------------------------------


def beat(db: Session, provider: str, *, watcher: str, mode: str) -> None:
    """The lock holder of ``provider`` says it is alive (insert or refresh its row)."""
    stmt = insert(CodeWatcherRow).values(provider=provider, watcher=watcher, mode=mode)
    db.execute(
        stmt.on_conflict_do_update(
            index_elements=[CodeWatcherRow.provider],
            set_={
                "watcher": stmt.excluded.watcher,
                "mode": stmt.excluded.mode,
                "beat_at": func.now(),
                # A new holder starts now; the same holder keeps its start time.
                "started_at": func.coalesce(
                    select(CodeWatcherRow.started_at)
                    .where(and_(CodeWatcherRow.provider == provider, CodeWatcherRow.watcher == watcher))
                    .scalar_subquery(),
                    func.now(),
                ),
            },
        )
    )


def watcher_alive(db: Session, provider: str, stale_after_s: float) -> bool:
    """True when a watcher beat for ``provider`` within ``stale_after_s`` seconds."""
    age = db.scalar(
        select(func.extract("epoch", func.now() - CodeWatcherRow.beat_at)).where(
            CodeWatcherRow.provider == provider
        )
    )
    return age is not None and float(age) < stale_after_s


def watchers(db: Session) -> list[CodeWatcherRow]:
    return list(db.scalars(select(CodeWatcherRow).order_by(CodeWatcherRow.provider)))


def stop_beating(db: Session, provider: str, *, watcher: str) -> None:
    """A watcher that lets go of a provider removes its row, so flows fall back at once."""
    db.execute(
        CodeWatcherRow.__table__.delete().where(
            CodeWatcherRow.provider == provider, CodeWatcherRow.watcher == watcher
        )
    )
