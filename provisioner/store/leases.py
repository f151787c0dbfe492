"""Number lease operations: the purchase recorded before it is made, its result, its outcome
changes (checked against the lease table, store.lease_states) and the lease queries. Each takes a
SQLAlchemy Session and never commits: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from provisioner.store.lease_states import (
    CLOSED_LEASE_OUTCOMES,
    OPEN_LEASE_OUTCOMES,
    LeaseOutcome,
    check_lease_transition,
)
from provisioner.store.models import LeaseRow, SessionRow


def list_open_leases(db: Session) -> list[LeaseRow]:
    """Every lease that may still hold money or a number at a provider: one round trip."""
    stmt = (
        select(LeaseRow)
        .where(LeaseRow.outcome.in_([o.value for o in OPEN_LEASE_OUTCOMES]))
        .order_by(LeaseRow.id)
    )
    return list(db.scalars(stmt))


def list_leases(
    db: Session, *, outcomes: Iterable[LeaseOutcome] | None = None, limit: int = 100
) -> list[LeaseRow]:
    """Leases newest first, optionally only those with the given outcomes."""
    stmt = select(LeaseRow).order_by(LeaseRow.id.desc()).limit(limit)
    if outcomes is not None:
        stmt = stmt.where(LeaseRow.outcome.in_([o.value for o in outcomes]))
    return list(db.scalars(stmt))


@dataclass(frozen=True)
class BoughtNumber:
    activation_id: str
    phone: str
    price: Decimal
    currency: str
    bought_at: datetime
    price_source: str | None = None  # reply | quote | cap: where the price recorded came from


def record_lease_pending(
    db: Session,
    session_id: str,
    *,
    provider: str,
    service: str,
    country: str,
    attempt: int,
    currency: str | None = None,
    cap: Decimal | None = None,
) -> LeaseRow:
    """Write the intent to buy before the purchase call, so a crash in between leaves a trace.
    `service`/`country` are the provider's own codes; `currency` the account's; `cap` the most
    the number may cost in it (reserved against the owner's budgets until the purchase settles).
    The lease carries the session's owner (budgets count by it)."""
    lease = LeaseRow(
        session_id=session_id,
        provider=provider,
        service=service,
        country=country,
        attempt=attempt,
        currency=currency,
        cap=cap,
        owner=db.scalar(select(SessionRow.owner).where(SessionRow.id == session_id)),
        outcome=LeaseOutcome.PENDING.value,
    )
    db.add(lease)
    db.flush()
    return lease


def complete_lease(
    db: Session, lease_id: int, bought: BoughtNumber, *, provider_status: str | None = None
) -> LeaseRow:
    """The purchase went through (or a lost one was found and adopted): the lease is active."""
    lease = set_lease_outcome(db, lease_id, LeaseOutcome.ACTIVE, provider_status=provider_status)
    lease.activation_id = bought.activation_id
    lease.phone = bought.phone
    lease.price = bought.price
    lease.currency = bought.currency
    lease.bought_at = bought.bought_at
    lease.price_source = bought.price_source
    db.flush()
    return lease


def set_lease_outcome(
    db: Session,
    lease_id: int,
    outcome: LeaseOutcome,
    *,
    provider_status: str | None = None,
    retry_after: datetime | None = None,
    attention: str | None = None,
    count_retry: bool = False,
) -> LeaseRow:
    """The one way a lease's outcome changes: locks the row, checks the lease table (an illegal
    change raises IllegalLeaseTransition), records the provider's words; closing outcomes stamp
    closed_at. ``count_retry`` adds one to the failed retries (lookups or closes)."""
    lease = db.get_one(LeaseRow, lease_id, with_for_update=True)
    check_lease_transition(lease_id, LeaseOutcome(lease.outcome), outcome)
    lease.outcome = outcome.value
    if provider_status is not None:
        lease.provider_status = provider_status[:200]
    lease.retry_after = retry_after
    if attention is not None:
        lease.attention = attention
    elif outcome not in _FLAG_KEPT:  # settled: nothing left for a person to check
        lease.attention = None
    if count_retry:
        lease.retries += 1
    if outcome in CLOSED_LEASE_OUTCOMES and lease.closed_at is None:
        lease.closed_at = func.now()
    if outcome == LeaseOutcome.UNKNOWN and lease.call_ended_at is None:
        lease.call_ended_at = func.now()
    db.flush()
    return lease


_FLAG_KEPT = frozenset({LeaseOutcome.UNKNOWN, LeaseOutcome.CANCEL_PENDING, LeaseOutcome.NEEDS_ATTENTION})


def set_lease_attention(db: Session, lease_id: int, attention: str) -> None:
    """Flag a lease for a person without changing its outcome."""
    db.execute(update(LeaseRow).where(LeaseRow.id == lease_id).values(attention=attention))


def note_lease(db: Session, lease_id: int, *, provider_status: str) -> None:
    """Record the provider's latest words without changing the outcome (e.g. the last poll)."""
    db.execute(update(LeaseRow).where(LeaseRow.id == lease_id).values(provider_status=provider_status[:200]))


def leases_needing_attention(db: Session, *, limit: int = 100) -> list[LeaseRow]:
    """Leases a person should look at (needs_attention, or flagged while still unknown), newest first."""
    stmt = (
        select(LeaseRow)
        .where(or_(LeaseRow.outcome == LeaseOutcome.NEEDS_ATTENTION.value, LeaseRow.attention.is_not(None)))
        .order_by(LeaseRow.id.desc())
        .limit(limit)
    )
    return list(db.scalars(stmt))


def leases_for_session(db: Session, session_id: str) -> list[LeaseRow]:
    return list(db.scalars(select(LeaseRow).where(LeaseRow.session_id == session_id).order_by(LeaseRow.id)))


def open_lease_for_session(db: Session, session_id: str) -> LeaseRow | None:
    stmt = (
        select(LeaseRow)
        .where(
            LeaseRow.session_id == session_id, LeaseRow.outcome.in_([o.value for o in OPEN_LEASE_OUTCOMES])
        )
        .order_by(LeaseRow.id.desc())
        .limit(1)
    )
    return db.scalars(stmt).first()
