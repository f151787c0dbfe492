"""Renting, watching and closing numbers, with every purchase recorded before it is made."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from providers.base import Lease
from providers.errors import CancelTooEarly, NotRefundable, ProviderError, TransientError, UnavailableError
from providers.money import Money
from provisioning.catalogs import purchase_target
from provisioning.codes import CodeResult, poll_delays, wait_for_code  # noqa: F401 (the flow's names)
from provisioning.deps import Deps
from store import LeaseOutcome, LeaseRow, State
from store import repository as repo

log = logging.getLogger(__name__)


class NoNumberAvailable(Exception):
    """Every provider in the list was unavailable or not configured; the message says why for each."""

    def __init__(self, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        detail = "; ".join(f"{name}: {why}" for name, why in reasons.items()) or "no providers given"
        super().__init__(f"no provider could rent a number ({detail})")


class NoProviderConfigured(Exception):
    def __init__(self) -> None:
        super().__init__(
            "no SMS provider is configured: set PROVISIONER_PROVIDERS__<NAME>__API_KEY (and __BASE_URL for a "
            "compatible provider or the simulator) for one of sms_man, onlinesim, sms_activate"
        )


# A re-run resumes a number of the same attempt only while it can still receive the code.
_RESUMABLE = frozenset({LeaseOutcome.ACTIVE, LeaseOutcome.CODE_RECEIVED})


@dataclass(frozen=True)
class RentedNumber:
    lease_id: int
    provider: str
    activation_id: str
    phone: str
    price: Decimal
    currency: str


def lease_of(row: LeaseRow) -> Lease:
    """The provider-facing value of a recorded lease."""
    return Lease(
        provider=row.provider,
        activation_id=row.activation_id or "",
        phone=row.phone or "",
        price=row.price or Decimal(0),
        currency=row.currency or "",
        bought_at=row.bought_at or datetime.now(UTC),
    )


def _rented(row: LeaseRow) -> RentedNumber:
    return RentedNumber(
        row.id,
        row.provider,
        row.activation_id or "",
        row.phone or "",
        row.price or Decimal(0),
        row.currency or "",
    )


def rent_number(
    deps: Deps,
    session_id: str,
    *,
    providers: list[str],
    service: str,
    country: str,
    max_price: Money | None,
    attempt: int,
    actor: str,
) -> RentedNumber:
    """Rent one number for ``attempt``, trying providers in order.

    ``service``/``country`` are canonical: each provider is asked with its own codes from its
    catalog and the cap in its own currency, or skipped with the reason it cannot be.
    Idempotent per (session, attempt): a retried task finds the number it already bought. The
    lease row is written as pending before each purchase call and completed right after it.
    """
    with deps.sessions.begin() as db:
        repo.ensure_not_ended(db, session_id)
        for row in repo.leases_for_session(db, session_id):
            if row.attempt == attempt and row.activation_id and row.outcome in _RESUMABLE:
                log.info("attempt %d already rented %s from %s", attempt, row.activation_id, row.provider)
                return _rented(row)

    reasons: dict[str, str] = {}
    transient: TransientError | None = None
    for name in providers:
        if not deps.settings.providers.get(name).configured:
            reasons[name] = "not configured"
            continue
        client = deps.provider(name)
        target = purchase_target(deps, name, service=service, country=country, max_price=max_price)
        if isinstance(target, str):
            reasons[name] = target
            log.warning("%s skipped: %s", name, target)
            continue
        with deps.sessions.begin() as db:
            lease_id = repo.record_lease_pending(
                db,
                session_id,
                provider=name,
                service=target.service,
                country=target.country,
                attempt=attempt,
                currency=target.currency,
            ).id
        try:
            lease = client.acquire(target.service, target.country, target.max_price)
        except UnavailableError as exc:
            _mark_failed(deps, lease_id, exc)
            reasons[name] = str(exc)
            log.warning("%s cannot rent a number now (%s); trying the next provider", name, exc)
            continue
        except TransientError as exc:
            if exc.code == "timeout":
                # The purchase may have gone through: leave the row pending for the reconciler,
                # and buy nowhere else meanwhile; the task's retry comes back after a backoff.
                raise
            # Nothing was sold. Try the next provider now; if none can sell, raise the first
            # transient error so the task retries the whole list after a backoff.
            _mark_failed(deps, lease_id, exc)
            reasons[name] = str(exc)
            transient = transient or exc
            log.warning("%s failed transiently (%s); trying the next provider", name, exc)
            continue
        except ProviderError as exc:  # stop errors and malformed replies: fix something first
            _mark_failed(deps, lease_id, exc)
            raise
        with deps.sessions.begin() as db:
            row = repo.complete_lease(
                db,
                lease_id,
                repo.BoughtNumber(
                    lease.activation_id, lease.phone, lease.price, lease.currency, lease.bought_at
                ),
            )
            session = repo.get_session(db, session_id, for_update=True)
            fields = {"provider": name, "phone_number": lease.phone}
            if session.state == State.REQUESTED:
                repo.transition(
                    db, session_id, State.NUMBER_ACQUIRED, reason=f"rented from {name}", actor=actor, **fields
                )
            else:
                repo.update_session(db, session_id, **fields)
                repo.record_event(
                    db, session_id, reason=f"attempt {attempt}: new number from {name}", actor=actor
                )
            return _rented(row)
    if transient is not None:
        raise transient
    raise NoNumberAvailable(reasons)


def _mark_failed(deps: Deps, lease_id: int, exc: Exception) -> None:
    with deps.sessions.begin() as db:
        repo.set_lease_outcome(
            db, lease_id, LeaseOutcome.FAILED, provider_status=f"{type(exc).__name__}: {exc}"
        )


def finish_number(deps: Deps, lease_id: int) -> None:
    """Tell the provider the activation is done (keeps the charge)."""
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, lease_id)
        if row.outcome == LeaseOutcome.FINISHED:
            return
        lease = lease_of(row)
    deps.provider(lease.provider).finish(lease)
    with deps.sessions.begin() as db:
        repo.set_lease_outcome(db, lease_id, LeaseOutcome.FINISHED, provider_status="finished")


class CancelDeferred(Exception):
    """The provider refused an early cancel; the lease is cancel_pending until ``retry_at``."""

    def __init__(self, lease_id: int, retry_at: datetime, wait_s: float) -> None:
        self.lease_id = lease_id
        self.retry_at = retry_at
        self.wait_s = wait_s
        super().__init__(f"lease {lease_id}: the provider refuses cancel for {wait_s:.0f} s more")


def cancel_number(deps: Deps, lease_id: int) -> str:
    """Cancel (refund) a number; returns how it ended: "cancelled", or "finished" when the provider
    will not refund it (its code arrived first: finished and recorded as finished, never refunded).
    Raises CancelDeferred when the provider says too early: the lease is then recorded as
    cancel_pending with the time to retry."""
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, lease_id)
        if row.outcome in (
            LeaseOutcome.CANCELLED,
            LeaseOutcome.FAILED,
            LeaseOutcome.EXPIRED,
            LeaseOutcome.FINISHED,
        ):
            return str(row.outcome)
        lease = lease_of(row)
    client = deps.provider(lease.provider)
    try:
        client.cancel(lease)
    except NotRefundable as exc:
        # The code arrived first (or free cancellation is over): the charge stands, never a refund.
        client.finish(lease)
        with deps.sessions.begin() as db:
            repo.set_lease_outcome(
                db, lease_id, LeaseOutcome.FINISHED, provider_status=f"finished instead of cancelled: {exc}"
            )
        return "finished"
    except CancelTooEarly as exc:
        retry_at = datetime.now(UTC) + timedelta(seconds=exc.retry_after_s)
        with deps.sessions.begin() as db:
            repo.set_lease_outcome(
                db, lease_id, LeaseOutcome.CANCEL_PENDING, provider_status=str(exc), retry_after=retry_at
            )
        raise CancelDeferred(lease_id, retry_at, exc.retry_after_s) from exc
    with deps.sessions.begin() as db:
        repo.set_lease_outcome(db, lease_id, LeaseOutcome.CANCELLED, provider_status="cancelled")
    return "cancelled"


def cancel_number_waiting(
    deps: Deps, lease_id: int, *, max_wait_s: float, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Cancel, waiting out the provider's minimum time when it is short enough; never buys again.
    Returns False when the cancel is left pending for the reconciler."""
    give_up = time.monotonic() + max_wait_s
    while True:
        try:
            cancel_number(deps, lease_id)
            return True
        except CancelDeferred as exc:
            if time.monotonic() + exc.wait_s > give_up:
                log.warning("%s; leaving it to reconciliation", exc)
                return False
            log.info("%s; waiting", exc)
            sleep(max(exc.wait_s, 0.5))


def close_number(deps: Deps, lease_id: int, *, code_received: bool) -> str:
    """Finish a number that got its code (the charge stands), cancel (refund) any other.
    Raises CancelDeferred when the provider refuses the cancel for now."""
    if code_received:
        finish_number(deps, lease_id)
        return "finished"
    return cancel_number(deps, lease_id)


def close_open_leases(deps: Deps, session_id: str) -> list[str]:
    """Finish leases that got a code, cancel the rest; returns problems (never raises for one lease)."""
    problems: list[str] = []
    with deps.sessions.begin() as db:
        leases = [(row.id, row.outcome, row.activation_id) for row in repo.leases_for_session(db, session_id)]
    for lease_id, outcome, activation_id in leases:
        try:
            if outcome in (LeaseOutcome.CODE_RECEIVED, LeaseOutcome.ACTIVE, LeaseOutcome.CANCEL_PENDING):
                close_number(deps, lease_id, code_received=outcome == LeaseOutcome.CODE_RECEIVED)
            elif outcome == LeaseOutcome.PENDING and not activation_id:
                problems.append(f"lease {lease_id}: purchase outcome unknown, left for reconciliation")
        except CancelDeferred as exc:
            problems.append(str(exc))
        except ProviderError as exc:
            problems.append(f"lease {lease_id}: {exc}")
    return problems
