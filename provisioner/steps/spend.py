"""Money decisions, pure: the effective price cap, the budget reservation, the charge, the
account currency and the balance. No I/O here: the callers read what these decide on (settings,
the budgets' spend, the provider's replies) and act on the answer (docs/money.md).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from provisioner.values.money import Budget, Money, NoRate, convert

OVERALL = "*"  # the budget key of PROVISIONER_SPEND__DAILY_BUDGET (owner keys are client names)
BUDGET_EXHAUSTED = "budget exhausted"  # the session reason and the API's 402 reason
NO_CEILING = (
    "no price ceiling: set PROVISIONER_SPEND__MAX_PRICE (e.g. '0.50 USD'), else a request may buy a "
    "number at any price"
)


class AboveCeiling(ValueError):
    """A request's max_price above the configured ceiling (PROVISIONER_SPEND__MAX_PRICE)."""

    def __init__(self, requested: Money, ceiling: Money) -> None:
        self.requested = requested
        self.ceiling = ceiling
        super().__init__(
            f"max_price {requested} is above the ceiling {ceiling} (PROVISIONER_SPEND__MAX_PRICE): "
            "a request can only lower it"
        )


def effective_cap(
    ceiling: Money | None, requested: Money | None, default: Money | None, fx: Mapping[str, Decimal]
) -> Money | None:
    """The most a number may cost for one request: the lower of the ceiling and the request's
    max_price (else the configured default), compared after conversion. A request above the
    ceiling raises AboveCeiling; a pair without an operator rate raises NoRate. A default above
    the ceiling is simply lowered to it."""
    if (
        requested is not None
        and ceiling is not None
        and convert(requested, ceiling.currency, fx) > ceiling.amount
    ):
        raise AboveCeiling(requested, ceiling)
    wanted = requested if requested is not None else default
    if wanted is None:
        return ceiling
    if ceiling is None:
        return wanted
    return wanted if convert(wanted, ceiling.currency, fx) <= ceiling.amount else ceiling


def day_window(now: datetime, zone: str) -> tuple[datetime, datetime]:
    """The calendar day containing ``now`` in ``zone``: its start and the next day's (tz-aware)."""
    tz = ZoneInfo(zone)
    day = now.astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


@dataclass(frozen=True)
class BudgetState:
    """One budget as a purchase sees it: charged and reserved so far today, in its currency."""

    key: str  # OVERALL or an owner
    budget: Budget
    spent: Decimal
    resets_at: datetime

    @property
    def remaining(self) -> Decimal:
        return max(self.budget.limit.amount - self.spent, Decimal(0))

    def as_json(self) -> dict[str, str]:
        currency = self.budget.limit.currency
        return {
            "budget": self.key,
            "limit": str(self.budget),
            "spent": f"{self.spent:.4f} {currency}",
            "remaining": f"{self.remaining:.4f} {currency}",
            "resets_at": self.resets_at.isoformat(),
        }


class BudgetExhausted(Exception):
    """A purchase (or a request) the budget cannot cover; nothing was bought."""

    def __init__(self, state: BudgetState, cap: Money | None) -> None:
        self.state = state
        self.cap = cap
        what = f"a number at up to {cap}" if cap is not None else "a number without a price cap"
        super().__init__(
            f"{BUDGET_EXHAUSTED}: {state.key if state.key != OVERALL else 'the overall'} budget "
            f"{state.budget} has {state.remaining:.4f} {state.budget.limit.currency} left (spent or "
            f"reserved {state.spent:.4f}); {what} does not fit; resets at {state.resets_at.isoformat()}"
        )

    def __reduce__(self):  # picklable, for Prefect's state results
        return (BudgetExhausted, (self.state, self.cap))


def decide_reservation(
    states: list[BudgetState], cap: Money | None, fx: Mapping[str, Decimal]
) -> BudgetState | None:
    """The first budget a purchase at up to ``cap`` would overrun (it is refused), or None (the
    cap is reserved against all). Without a cap nothing bounds the charge: refused by any budget."""
    for state in states:
        if cap is None:
            return state
        try:
            needed = convert(cap, state.budget.limit.currency, fx)
        except NoRate:
            return state
        if state.spent + needed > state.budget.limit.amount:
            return state
    return None


class Charge(enum.StrEnum):
    WITHIN = "within"  # at or under the effective cap (or no cap)
    OVER = "over"  # above it: cancel at once, count an overcharge
    UNCOMPARABLE = "uncomparable"  # no rate between the charge's currency and the cap's: as over


def decide_charge(charged: Money, cap: Money | None, fx: Mapping[str, Decimal]) -> Charge:
    """Whether an amount charged keeps to the effective cap."""
    if cap is None:
        return Charge.WITHIN
    try:
        in_cap = convert(charged, cap.currency, fx)
    except NoRate:
        return Charge.UNCOMPARABLE
    return Charge.WITHIN if in_cap <= cap.amount else Charge.OVER


def decide_keep(
    provider: str, account_currency: str, charged: Money, cap: Money | None, fx: Mapping[str, Decimal]
) -> tuple[str | None, bool]:
    """After a purchase: (why to cancel the number at once, or None to keep it; whether it counts
    as an overcharge). A charge in another currency than the account's stops that provider; a
    charge above the effective cap (or one that cannot be compared with it) is an overcharge."""
    mismatch = decide_currency(provider, account_currency, charged.currency)
    if mismatch:
        return mismatch, False
    verdict = decide_charge(charged, cap, fx)
    if verdict == Charge.OVER:
        return f"charged {charged}, above the cap {cap}: cancelled at once", True
    if verdict == Charge.UNCOMPARABLE:
        return (
            f"charged {charged}, no rate (PROVISIONER_FX) to compare it with the cap {cap}: cancelled at once",
            True,
        )
    return None, False


def decide_currency(provider: str, configured: str, reported: str | None) -> str | None:
    """Why purchases from ``provider`` stop, when the currency the provider reports for the
    account is not the one prices are read in; None when they agree or it reported none."""
    if reported is None or reported.upper() == configured.upper():
        return None
    return (
        f"{provider} bills this account in {reported.upper()}, prices are read as {configured}: "
        f"set PROVISIONER_PROVIDERS__{provider.upper()}__CURRENCY={reported.upper()} (no purchase until then)"
    )


def decide_balance(balance: Decimal | None, cap_in_account: Decimal | None) -> bool:
    """True when a provider is skipped without a purchase call: its last balance read is below
    what the number may cost."""
    return balance is not None and cap_in_account is not None and balance < cap_in_account


def crossed_low(balance: Decimal, threshold: Decimal, was_low: bool) -> tuple[bool, bool]:
    """(now low, emit the low-balance event): the event once per crossing below the threshold."""
    low = balance < threshold
    return low, low and not was_low
