"""Daily budgets, overall (PROVISIONER_SPEND__DAILY_BUDGET) and per owner (`provisioner clients
add NAME --budget '5 USD/day'`): the reads and locks around the pure decision
(steps.spend.decide_reservation).

A purchase reserves its effective cap in the transaction that records its pending lease
(`reserve`, under an advisory lock per budget), so concurrent provisions cannot together pass a
budget: the pending lease *is* the reservation (store.spend counts it at its cap), its price
replaces it when the number is sold, and it counts nothing once refused or refunded.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioner.settings import Settings
from provisioner.steps.spend import OVERALL, BudgetExhausted, BudgetState, day_window, decide_reservation
from provisioner.store import spend as spendrepo
from provisioner.values.money import Budget, Money, NoRate, convert

log = logging.getLogger(__name__)


def _budgets(db: Session, settings: Settings, owner: str | None) -> list[tuple[str, Budget]]:
    found: list[tuple[str, Budget]] = []
    if settings.spend.daily_budget:
        found.append((OVERALL, Budget.parse(settings.spend.daily_budget)))
    row = spendrepo.budget_of(db, owner) if owner else None
    if row is not None:
        found.append((row.owner, Budget(Money(_plain(row.amount), row.currency))))
    return found


def _plain(amount: Decimal) -> Decimal:
    """A stored amount (4 places) as it was written: 0.3000 -> 0.30, 1.2345 stays."""
    cents = amount.quantize(Decimal("0.01"))
    return cents if cents == amount else amount.normalize()


def _spent(
    db: Session, settings: Settings, key: str, budget: Budget, start: datetime, end: datetime
) -> Decimal:
    total = Decimal(0)
    currency = budget.limit.currency
    for spent_currency, amount in spendrepo.counted(db, start, end, None if key == OVERALL else key).items():
        try:
            total += convert(Money(amount, spent_currency or currency), currency, settings.fx)
        except NoRate as exc:
            log.warning(
                "budget %s: %s %s cannot be counted in %s (%s): counted as exhausted",
                key,
                amount,
                spent_currency,
                currency,
                exc,
            )
            return budget.limit.amount
    return total


def budget_states(db: Session, settings: Settings, owner: str | None) -> list[BudgetState]:
    """The budgets a purchase by ``owner`` counts against (overall first), with today's spend."""
    budgets = _budgets(db, settings, owner)
    if not budgets:
        return []
    now = db.scalar(select(func.now()))
    start, end = day_window(now, settings.spend.timezone)
    return [
        BudgetState(key, budget, _spent(db, settings, key, budget, start, end), end)
        for key, budget in budgets
    ]


def reserve(db: Session, settings: Settings, owner: str | None, cap: Money | None) -> None:
    """Lock the owner's budgets and check that a number at up to ``cap`` fits them all; the caller
    records the pending lease (the reservation) in this same transaction. Raises BudgetExhausted."""
    keys = [key for key, _ in _budgets(db, settings, owner)]
    for key in keys:  # overall first, then the owner: one order, no deadlock
        spendrepo.lock_budget(db, key)
    refused = decide_reservation(budget_states(db, settings, owner), cap, settings.fx)
    if refused is not None:
        raise BudgetExhausted(refused, cap)


def check(db: Session, settings: Settings, owner: str | None, cap: Money | None) -> list[BudgetState]:
    """The same decision without a lock or a reservation, before anything starts (the gateway's
    402, the provision before its device): raises BudgetExhausted; returns the budgets' states."""
    states = budget_states(db, settings, owner)
    refused = decide_reservation(states, cap, settings.fx)
    if refused is not None:
        raise BudgetExhausted(refused, cap)
    return states
