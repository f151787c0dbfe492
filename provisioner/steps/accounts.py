"""Provider accounts: their currency as the provider reports it, their balance, the low-balance
event, and whether a purchase may go to one now.

An account is read (its balance reply: the amount and, where the reply names one, the currency)
at most once per `spend.balance_interval_s`: by the maintain-pool flow on every pass, and by a
purchase that finds the last read older than that. What was read is kept in `provider_accounts`
(`provisioner catalog` shows it). Reading emits the Prefect event
`provisioner.provider.balance.low` once per crossing below `spend.low_balance`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from providers.errors import ProviderError
from provisioner.prefect_api.events import LOW_BALANCE_EVENT, emit_low_balance  # noqa: F401 (re-exported)
from provisioner.steps.deps import Deps
from provisioner.steps.spend import crossed_low, decide_balance, decide_currency
from provisioner.store import spend as spendrepo
from provisioner.store.models import ProviderAccountRow
from provisioner.values.money import Money, NoRate, convert

log = logging.getLogger(__name__)
CONFIGURED = "configured"  # currency_source: the provider named none, the configured one is shown

Emit = Callable[..., object]


def _threshold_in(deps: Deps, currency: str) -> tuple[Money | None, Decimal | None]:
    low = deps.settings.spend.low_balance
    if low is None:
        return None, None
    threshold = Money.parse(low)
    try:
        return threshold, convert(threshold, currency, deps.settings.fx)
    except NoRate as exc:
        log.warning("low-balance threshold %s cannot be compared with %s: %s", threshold, currency, exc)
        return threshold, None


def read_account(deps: Deps, name: str, *, emit: Emit = emit_low_balance) -> ProviderAccountRow:
    """Read one provider account now and record it; emits the low-balance event on a crossing."""
    client = deps.provider(name)
    with deps.sessions() as db:
        before = spendrepo.account(db, name)
    try:
        account = client.account()
    except ProviderError as exc:
        with deps.sessions.begin() as db:
            return spendrepo.record_account(db, name, error=str(exc)[:500])
    reported = before is not None and before.currency_source not in (None, CONFIGURED)
    if account.currency:
        currency, source = account.currency, "balance"
    elif reported:
        assert before is not None
        currency, source = before.currency, before.currency_source
    else:
        currency, source = client.currency, CONFIGURED
    shown = currency or client.currency
    threshold, in_account = _threshold_in(deps, shown)
    low, emit_now = (False, False)
    if in_account is not None:
        low, emit_now = crossed_low(account.balance, in_account, before.low if before is not None else False)
    with deps.sessions.begin() as db:
        row = spendrepo.record_account(
            db,
            name,
            currency=currency,
            currency_source=source,
            balance=account.balance,
            balance_at=datetime.now(UTC),
            low=low,
            error=None,
        )
    if emit_now and threshold is not None:
        log.warning("%s balance %s %s is below %s", name, account.balance, shown, threshold)
        emit(name, account.balance, shown, threshold)
    return row


def read_stale_accounts(deps: Deps, *, emit: Emit = emit_low_balance) -> dict[str, str]:
    """Read every configured account not read within `spend.balance_interval_s`; one failing does
    not stop the others. Returns provider -> what was read (or why not)."""
    results: dict[str, str] = {}
    for name in deps.settings.providers.configured_names():
        try:
            if not _stale(deps, name):
                results[name] = "fresh"
                continue
            row = read_account(deps, name, emit=emit)
            results[name] = row.error or f"{row.balance} {row.currency or deps.provider(name).currency}"
        except Exception as exc:  # isolated: the next account is still read
            log.warning("%s: balance read failed: %s", name, exc)
            results[name] = f"failed: {type(exc).__name__}: {exc}"
    return results


def _stale(deps: Deps, name: str) -> bool:
    with deps.sessions() as db:
        row = spendrepo.account(db, name)
        now = db.scalar(select(func.now()))
    max_age = timedelta(seconds=deps.settings.spend.balance_interval_s)
    return row is None or row.balance_at is None or now - row.checked_at >= max_age


def record_reported_currency(deps: Deps, name: str, currency: str, source: str) -> None:
    """A currency the provider named outside a balance reply (a purchase reply)."""
    with deps.sessions.begin() as db:
        spendrepo.record_account(db, name, currency=currency, currency_source=source)


def purchase_block(deps: Deps, name: str, cap_in_account: Decimal | None) -> str | None:
    """Why no purchase may go to ``name`` now (its account bills in another currency than prices
    are read in, or its balance is below what the number may cost), or None. Reads the account
    first when the last read is older than `spend.balance_interval_s`."""
    if _stale(deps, name):
        read_account(deps, name)
    with deps.sessions() as db:
        row = spendrepo.account(db, name)
    if row is None:
        return None
    configured = deps.provider(name).currency
    reported = row.currency if row.currency_source != CONFIGURED else None
    mismatch = decide_currency(name, configured, reported)
    if mismatch:
        return mismatch
    if decide_balance(row.balance, cap_in_account):
        return f"balance {row.balance} {configured} is below the cap {cap_in_account} {configured}"
    return None
