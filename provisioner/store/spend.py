"""What the leases cost: budgets per owner, the day's spend a purchase is checked against, the
spend report, and the provider accounts' currency and balance.

A lease counts against its owner's budgets by what it may still cost or did cost:

    pending / unknown (no activation yet)   its cap (the reservation)
    bought, not refunded                    its price (the charged amount)
    failed, cancelled, expired without code 0 (released, or refunded)

So a reservation becomes the charge when the number is sold and disappears when the purchase is
refused or the number refunded, without any bookkeeping of its own.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import String, case, cast, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from provisioner.store.leases import LeaseOutcome
from provisioner.store.models import BudgetRow, LeaseRow, ProviderAccountRow, SessionRow

LO = LeaseOutcome
_RELEASED = [LO.FAILED.value, LO.CANCELLED.value]
_REFUNDED = (LeaseRow.outcome == LO.CANCELLED.value) | (
    (LeaseRow.outcome == LO.EXPIRED.value) & LeaseRow.code.is_(None)
)
_RESERVED = LeaseRow.activation_id.is_(None) & LeaseRow.outcome.notin_(_RELEASED + [LO.EXPIRED.value])
_BOUGHT = LeaseRow.activation_id.is_not(None)
# What a lease counts against its budgets now.
COUNTED = case(
    (_RESERVED, func.coalesce(LeaseRow.cap, 0)),
    (_BOUGHT & ~_REFUNDED, func.coalesce(LeaseRow.price, LeaseRow.cap, 0)),
    else_=literal(0),
)
_OPEN = [LO.ACTIVE.value, LO.CODE_RECEIVED.value, LO.CANCEL_PENDING.value]


def lock_budget(db: Session, key: str) -> None:
    """Serialise purchases against one budget until the transaction ends (an advisory lock)."""
    db.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"provisioner.budget:{key}", 0))))


def counted(db: Session, start: datetime, end: datetime, owner: str | None = None) -> dict[str, Decimal]:
    """Currency -> what the leases requested in [start, end) count against a budget (one owner's,
    or everyone's)."""
    stmt = (
        select(LeaseRow.currency, func.sum(COUNTED))
        .where(LeaseRow.requested_at >= start, LeaseRow.requested_at < end)
        .group_by(LeaseRow.currency)
    )
    if owner is not None:
        stmt = stmt.where(LeaseRow.owner == owner)
    return {currency or "": amount or Decimal(0) for currency, amount in db.execute(stmt)}


def session_cost(db: Session, session_id: str) -> dict[str, Decimal]:
    """Currency -> what a session's numbers cost (charged and not refunded; reservations included)."""
    stmt = (
        select(LeaseRow.currency, func.sum(COUNTED))
        .where(LeaseRow.session_id == session_id)
        .group_by(LeaseRow.currency)
    )
    return {currency or "": amount for currency, amount in db.execute(stmt) if amount}


def budget_of(db: Session, owner: str) -> BudgetRow | None:
    return db.get(BudgetRow, owner)


def set_budget(db: Session, owner: str, amount: Decimal | None, currency: str = "") -> None:
    """Set (or, with None, remove) an owner's daily budget."""
    if amount is None:
        row = db.get(BudgetRow, owner)
        if row is not None:
            db.delete(row)
        return
    values = {"owner": owner, "amount": amount, "currency": currency, "updated_at": func.now()}
    db.execute(
        insert(BudgetRow)
        .values(**values)
        .on_conflict_do_update(index_elements=[BudgetRow.owner], set_=values)
    )


def list_budgets(db: Session) -> list[BudgetRow]:
    return list(db.scalars(select(BudgetRow).order_by(BudgetRow.owner)))


GROUPS = ("client", "provider", "day", "service")


def report(db: Session, since: datetime, by: str, zone: str) -> list[dict]:
    """Spend per group (client, provider, day in ``zone``, or service) and currency, of the leases
    requested since ``since``: charged (bought, not refunded), refunded, open (bought, still open:
    may yet be refunded), reserved (purchases not settled), overcharged (numbers charged above
    their cap), numbers (bought)."""
    key = {
        "client": func.coalesce(LeaseRow.owner, "-"),
        "provider": LeaseRow.provider,
        "day": cast(func.date(func.timezone(zone, LeaseRow.requested_at)), String),
        "service": SessionRow.service,
    }[by]
    price = func.coalesce(LeaseRow.price, 0)

    def total(condition):
        return func.coalesce(func.sum(case((condition, price), else_=literal(0))), 0)

    stmt = (
        select(
            key.label("key"),
            LeaseRow.currency,
            total(_BOUGHT & ~_REFUNDED),
            total(_BOUGHT & _REFUNDED),
            total(_BOUGHT & LeaseRow.outcome.in_(_OPEN)),
            func.coalesce(func.sum(case((_RESERVED, func.coalesce(LeaseRow.cap, 0)), else_=literal(0))), 0),
            func.count().filter(LeaseRow.overcharged),
            func.count().filter(_BOUGHT),
        )
        .join(SessionRow, SessionRow.id == LeaseRow.session_id)
        .where(LeaseRow.requested_at >= since)
        .group_by(key, LeaseRow.currency)
        .order_by(key, LeaseRow.currency)
    )
    return [
        {
            by: group,
            "currency": currency or "",
            "charged": str(charged),
            "refunded": str(refunded),
            "open": str(open_),
            "reserved": str(reserved),
            "overcharged": overcharged,
            "numbers": numbers,
        }
        for group, currency, charged, refunded, open_, reserved, overcharged, numbers in db.execute(stmt)
    ]


def totals_by_provider(db: Session) -> list[tuple[str, str, Decimal, Decimal, int]]:
    """(provider, currency, charged, refunded, overcharged numbers) over every lease: the metrics."""
    price = func.coalesce(LeaseRow.price, 0)
    stmt = (
        select(
            LeaseRow.provider,
            func.coalesce(LeaseRow.currency, ""),
            func.coalesce(func.sum(case((_BOUGHT & ~_REFUNDED, price), else_=literal(0))), 0),
            func.coalesce(func.sum(case((_BOUGHT & _REFUNDED, price), else_=literal(0))), 0),
            func.count().filter(LeaseRow.overcharged),
        )
        .where(_BOUGHT)
        .group_by(LeaseRow.provider, LeaseRow.currency)
    )
    return [tuple(row) for row in db.execute(stmt)]  # type: ignore[misc]


# --- provider accounts --------------------------------------------------------------------------


def account(db: Session, provider: str) -> ProviderAccountRow | None:
    return db.get(ProviderAccountRow, provider)


def list_accounts(db: Session) -> list[ProviderAccountRow]:
    return list(db.scalars(select(ProviderAccountRow).order_by(ProviderAccountRow.provider)))


def record_account(db: Session, provider: str, **values: object) -> ProviderAccountRow:
    """Upsert what was read of a provider account (currency, currency_source, balance, balance_at,
    low, error); checked_at is now."""
    values = {**values, "checked_at": func.now()}
    db.execute(
        insert(ProviderAccountRow)
        .values(provider=provider, **values)
        .on_conflict_do_update(index_elements=[ProviderAccountRow.provider], set_=values)
    )
    db.flush()
    row = db.get(ProviderAccountRow, provider, populate_existing=True)
    assert row is not None
    return row
