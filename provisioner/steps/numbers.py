"""Renting, watching and closing numbers, with every purchase recorded before it is made."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from providers.base import Cancelled, CodeReceived, Expired, Lease
from providers.errors import (
    CancelTooEarly,
    NotRefundable,
    NotSupported,
    ProviderError,
    PurchaseUnknown,
    TransientError,
    UnavailableError,
)
from provisioner.steps import accounts, budgets
from provisioner.steps.catalogs import purchase_target
from provisioner.steps.codes import lease_of, record_code
from provisioner.steps.deps import Deps
from provisioner.steps.purchases import Resolution, Resolved, mark_unknown, resolve_now, unsettled_providers
from provisioner.steps.request import RentRequest
from provisioner.steps.spend import decide_keep
from provisioner.store import LeaseOutcome, LeaseRow, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.store.lease_states import CLOSED_LEASE_OUTCOMES, IllegalLeaseTransition
from provisioner.values.money import Money

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


def _rented(row: LeaseRow) -> RentedNumber:
    return RentedNumber(
        row.id,
        row.provider,
        row.activation_id or "",
        row.phone or "",
        row.price or Decimal(0),
        row.currency or "",
    )


@dataclass(frozen=True)
class Tried:
    """A provider that rented nothing this time, and why; ``transient``: it may sell later (the
    whole list is then retried after a backoff)."""

    provider: str
    reason: str
    transient: TransientError | None = None


def decide_resume(leases: Sequence[LeaseRow], attempt: int) -> LeaseRow | None:
    """The number ``attempt`` already rented that can still get its code (a retried task), if any."""
    return next(
        (row for row in leases if row.attempt == attempt and row.activation_id and row.outcome in _RESUMABLE),
        None,
    )


def decide_skip(name: str, *, configured: bool, unsettled: Mapping[str, int]) -> str | None:
    """Why not to buy from ``name`` at all, or None. ``unsettled``: provider -> lease id of a purchase
    of this session whose outcome is unknown (never buy again blind where one may have gone through)."""
    if not configured:
        return "not configured"
    if name in unsettled:
        return f"the outcome of purchase (lease {unsettled[name]}) is still unknown"
    return None


def decide_refused(name: str, exc: ProviderError) -> Tried | None:
    """A purchase call that failed with a clear answer (nothing was sold): try the next provider
    (an unavailable one now; a transient "not now" too, remembered for a retry of the whole list),
    or None: stop, a stop error needs something fixed first."""
    if isinstance(exc, UnavailableError):
        return Tried(name, str(exc))
    if isinstance(exc, TransientError):
        return Tried(name, str(exc), exc)
    return None


def decide_lost(name: str, exc: PurchaseUnknown, resolved: Resolved) -> Tried | None:
    """A purchase call without a clear answer, after its immediate lookup: None when the lost
    purchase was adopted (it is the number), else the next provider; a lookup that found nothing
    sold counts as a transient failure (that provider may sell later)."""
    if resolved.resolution == Resolution.ADOPTED:
        return None
    transient = None
    if resolved.resolution == Resolution.NONE_SOLD:
        transient = TransientError(str(exc), provider=name, action=exc.action, code=exc.code)
    return Tried(name, f"{exc}; {resolved.detail}", transient)


def decide_none_rented(tried: Sequence[Tried]) -> Exception:
    """Every provider was tried without a number: the first transient failure (the task retries
    the list after a backoff), else NoNumberAvailable with each provider's reason."""
    first = next((t.transient for t in tried if t.transient is not None), None)
    return first if first is not None else NoNumberAvailable({t.provider: t.reason for t in tried})


def decide_rented_event(state: State, name: str, attempt: int) -> tuple[State | None, str]:
    """What renting records on the session: the move to number_acquired for its first number,
    else (a later attempt's number) only an event; and the event's reason."""
    if state == State.REQUESTED:
        return State.NUMBER_ACQUIRED, f"rented from {name}"
    return None, f"attempt {attempt}: new number from {name}"


def rent_number(deps: Deps, session_id: str, rent: RentRequest, *, attempt: int, actor: str) -> RentedNumber:
    """Rent one number for ``attempt``, trying ``rent.providers`` in order.

    ``rent.service``/``rent.country`` are canonical: each provider is asked with its own codes from its
    catalog and the cap in its own currency, or skipped with the reason it cannot be.
    Idempotent per (session, attempt): a retried task finds the number it already bought. The
    lease row is written as pending before each purchase call and completed right after it. A
    purchase without a clear answer is looked up at once (steps.purchases); while its outcome is
    unknown, nothing more is bought from that provider for this session. The decisions are the
    pure ``decide_*`` functions above; this function reads, calls and records.
    """
    with deps.sessions.begin() as db:
        repo.ensure_not_ended(db, session_id)
        resumed = decide_resume(lease_repo.leases_for_session(db, session_id), attempt)
        if resumed is not None:
            log.info("attempt %d already rented %s from %s", attempt, resumed.activation_id, resumed.provider)
            return _rented(resumed)

    tried: list[Tried] = []
    unsettled = unsettled_providers(deps, session_id)
    for name in rent.providers:
        skip = decide_skip(name, configured=deps.settings.providers.get(name).configured, unsettled=unsettled)
        if skip is None:
            client = deps.provider(name)
            target = purchase_target(
                deps, name, service=rent.service, country=rent.country, max_price=rent.max_price
            )
            skip = (
                target if isinstance(target, str) else accounts.purchase_block(deps, name, target.max_price)
            )
        if skip is not None:
            tried.append(Tried(name, skip))
            if skip != "not configured":
                log.warning("%s skipped: %s", name, skip)
            continue
        with deps.sessions.begin() as db:  # the pending lease is the budget reservation: one transaction
            owner = repo.get_session(db, session_id).owner
            budgets.reserve(db, deps.settings, owner, rent.max_price)  # raises BudgetExhausted
            lease_id = lease_repo.record_lease_pending(
                db,
                session_id,
                provider=name,
                service=target.service,
                country=target.country,
                attempt=attempt,
                currency=target.currency,
                cap=target.max_price,
            ).id
        try:
            lease = client.acquire(target.service, target.country, target.max_price)
        except PurchaseUnknown as exc:
            mark_unknown(deps, lease_id, exc)
            resolved = resolve_now(deps, lease_id)
            log.warning("%s: purchase outcome unknown (%s); lookup: %s", name, exc, resolved.detail)
            failed = decide_lost(name, exc, resolved)
            if failed is None:
                with deps.sessions.begin() as db:
                    row = db.get_one(LeaseRow, lease_id)
                    _record_rented(db, session_id, name, row.phone or "", attempt=attempt, actor=actor)
                    return _rented(row)
            tried.append(failed)
            continue
        except ProviderError as exc:
            _mark_failed(deps, lease_id, exc)
            failed = decide_refused(name, exc)
            if failed is None:  # stop errors: fix something first
                raise
            tried.append(failed)
            log.warning("%s rented nothing (%s); trying the next provider", name, exc)
            continue
        bought = lease_repo.BoughtNumber(
            lease.activation_id, lease.phone, lease.price, lease.currency, lease.bought_at, lease.price_source
        )
        charged = Money(lease.price, lease.currency)
        cancel_why, overcharged = decide_keep(
            name, target.currency, charged, rent.max_price, deps.settings.fx
        )
        with deps.sessions.begin() as db:
            row = lease_repo.complete_lease(db, lease_id, bought)
            if cancel_why is None:
                _record_rented(db, session_id, name, lease.phone, attempt=attempt, actor=actor)
                return _rented(row)
            row.overcharged = overcharged
        tried.append(Tried(name, _cancel_at_once(deps, lease_id, name, lease, cancel_why)))
    raise decide_none_rented(tried)


def _cancel_at_once(deps: Deps, lease_id: int, name: str, lease: Lease, why: str) -> str:
    """A number bought that must not be kept (charged above the cap, or in another currency):
    cancelled now (refunded) where the provider allows it, else left to reconciliation and marked
    for a person. Returns the reason the provider is passed over."""
    log.warning("%s: %s (lease %d)", name, why, lease_id)
    if lease.currency != deps.provider(name).currency:
        accounts.record_reported_currency(deps, name, lease.currency, "purchase reply")
    try:
        outcome = cancel_number_waiting(deps, lease_id, max_wait_s=0)
    except ProviderError as exc:
        outcome = f"cancel failed: {exc}"
    if outcome != LeaseOutcome.CANCELLED:
        with deps.sessions.begin() as db:
            lease_repo.set_lease_attention(
                db, lease_id, f"{why}; the cancel did not go through ({outcome}): check it"
            )
    log.info("lease %d: cancelled at once -> %s", lease_id, outcome)
    return f"{why} ({outcome})"


def _record_rented(db, session_id: str, name: str, phone: str, *, attempt: int, actor: str) -> None:
    session = repo.get_session(db, session_id, for_update=True)
    fields = {"provider": name, "phone_number": phone}
    to_state, reason = decide_rented_event(State(session.state), name, attempt)
    if to_state is not None:
        repo.transition(db, session_id, to_state, reason=reason, actor=actor, **fields)
    else:
        repo.update_session(db, session_id, **fields)
        repo.record_event(db, session_id, reason=reason, actor=actor)


def _mark_failed(deps: Deps, lease_id: int, exc: Exception) -> None:
    with deps.sessions.begin() as db:
        lease_repo.set_lease_outcome(
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
    _record_closed(deps, lease_id, LeaseOutcome.FINISHED, "finished")


class CancelDeferred(Exception):
    """The provider refused the cancel for now; the lease is cancel_pending until ``retry_at``.
    ``refused``: not a "too early" (worth waiting out) but a refusal (reconciliation retries it)."""

    def __init__(self, lease_id: int, retry_at: datetime, wait_s: float, *, refused: bool = False) -> None:
        self.lease_id = lease_id
        self.retry_at = retry_at
        self.wait_s = wait_s
        self.refused = refused
        why = "refused the cancel" if refused else "refuses cancel"
        super().__init__(f"lease {lease_id}: the provider {why}; retry in {wait_s:.0f} s")


_DONE = frozenset(
    {
        LeaseOutcome.CANCELLED,
        LeaseOutcome.FAILED,
        LeaseOutcome.EXPIRED,
        LeaseOutcome.FINISHED,
        LeaseOutcome.NEEDS_ATTENTION,
    }
)


def _record_closed(deps: Deps, lease_id: int, outcome: LeaseOutcome, provider_status: str) -> str:
    """Record what the provider did to close a lease, unless another actor (the provision flow and
    reconciliation may close the same lease at once) already recorded its closing: then theirs
    stands, and is returned."""
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, lease_id, with_for_update=True)
        if row.outcome in CLOSED_LEASE_OUTCOMES:
            return row.outcome
        lease_repo.set_lease_outcome(db, lease_id, outcome, provider_status=provider_status)
    return outcome


def cancel_number(deps: Deps, lease_id: int, *, count_failure: bool = False) -> str:
    """Cancel (refund) a number; returns the outcome recorded, which is what the provider did.

    The status is checked once more first: a code that just arrived is finished (the charge
    stands) and recorded with the code, not thrown away. A cancel the provider refuses (too early,
    or every configured cancel status refused) leaves the lease cancel_pending and raises
    CancelDeferred; ``count_failure`` (reconciliation) counts it, and after
    `reconcile.lease_retries` failures the lease becomes needs_attention.
    """
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, lease_id)
        if row.outcome in _DONE:
            return row.outcome
        lease, session_id = lease_of(row), row.session_id
    client = deps.provider(lease.provider)
    last = _last_look(client, lease)
    if isinstance(last, CodeReceived):
        return _finish_with_code(deps, lease_id, session_id, lease, last.code)
    if isinstance(last, Cancelled | Expired):
        outcome = LeaseOutcome.CANCELLED if isinstance(last, Cancelled) else LeaseOutcome.EXPIRED
        return _record_closed(deps, lease_id, outcome, last.status)
    try:
        client.cancel(lease)
    except NotRefundable as exc:
        # The code arrived first (or free cancellation is over): the charge stands, never a refund.
        last = _last_look(client, lease)
        if isinstance(last, CodeReceived):
            return _finish_with_code(deps, lease_id, session_id, lease, last.code, why=str(exc))
        client.finish(lease)
        return _record_closed(deps, lease_id, LeaseOutcome.FINISHED, f"finished instead of cancelled: {exc}")
    except CancelTooEarly as exc:
        raise defer_cancel(deps, lease_id, str(exc), exc.retry_after_s, count=count_failure) from exc
    except (UnavailableError, NotSupported) as exc:  # refused: retried later, never finished instead
        raise defer_cancel(deps, lease_id, str(exc), None, count=count_failure, refused=True) from exc
    return _record_closed(deps, lease_id, LeaseOutcome.CANCELLED, "cancelled")


def _last_look(client, lease: Lease):
    """The activation's status right before a cancel, or None when the provider cannot say now."""
    try:
        return client.check(lease)
    except ProviderError as exc:
        log.warning("status check of %s before its cancel failed: %s", lease.activation_id, exc)
        return None


def _finish_with_code(
    deps: Deps, lease_id: int, session_id: str, lease: Lease, code: str, *, why: str = ""
) -> str:
    """The code arrived just before the cancel: record it, finish (the charge stands), keep it."""
    record_code(deps, lease_id, code, via="check before cancel", actor="provisioner")
    deps.provider(lease.provider).finish(lease)
    with deps.sessions.begin() as db:
        lease_repo.set_lease_outcome(
            db,
            lease_id,
            LeaseOutcome.FINISHED,
            provider_status=f"code arrived before the cancel: finished{f' ({why})' if why else ''}",
        )
        if not repo.get_session(db, session_id).verification_code:  # the lease was not waiting any more
            repo.update_session(db, session_id, verification_code=code)
        repo.record_event(
            db,
            session_id,
            reason=f"code arrived on {lease.provider}:{lease.activation_id} just before its cancel: finished",
            actor="provisioner",
        )
    return LeaseOutcome.FINISHED


def defer_cancel(
    deps: Deps, lease_id: int, why: str, wait_s: float | None, *, count: bool, refused: bool = False
) -> CancelDeferred:
    """Record a refused cancel: cancel_pending with a retry time (backoff when the provider gave
    none), or needs_attention once the failures counted reach the bound."""
    config = deps.settings.reconcile
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, lease_id)
        retries = row.retries + (1 if count else 0)
        if wait_s is None:
            wait_s = min(config.lease_retry_max_s, config.lease_retry_s * (2**retries))
        retry_at = datetime.now(UTC) + timedelta(seconds=wait_s)
        if count and retries >= config.lease_retries:
            lease_repo.set_lease_outcome(
                db,
                lease_id,
                LeaseOutcome.NEEDS_ATTENTION,
                provider_status=why,
                attention=f"cancel failed {retries} times ({why}): close it at the provider by hand",
                count_retry=True,
            )
        else:
            lease_repo.set_lease_outcome(
                db,
                lease_id,
                LeaseOutcome.CANCEL_PENDING,
                provider_status=why,
                retry_after=retry_at,
                count_retry=count,
            )
    return CancelDeferred(lease_id, retry_at, wait_s, refused=refused)


def cancel_number_waiting(
    deps: Deps, lease_id: int, *, max_wait_s: float, sleep: Callable[[float], None] = time.sleep
) -> str:
    """Cancel, waiting out the provider's minimum time when it is short enough; never buys again.
    Returns the outcome recorded (cancel_pending when it is left to reconciliation)."""
    give_up = time.monotonic() + max_wait_s
    while True:
        try:
            return cancel_number(deps, lease_id)
        except CancelDeferred as exc:
            if exc.refused or time.monotonic() + exc.wait_s > give_up:
                log.warning("%s; leaving it to reconciliation", exc)
                return LeaseOutcome.CANCEL_PENDING
            log.info("%s; waiting", exc)
            sleep(max(exc.wait_s, 0.5))


def close_number(deps: Deps, lease_id: int, *, code_received: bool, count_failure: bool = False) -> str:
    """Finish a number that got its code (the charge stands), cancel (refund) any other; returns
    the outcome recorded. Raises CancelDeferred when the provider refuses the cancel for now."""
    if code_received:
        finish_number(deps, lease_id)
        return LeaseOutcome.FINISHED
    return cancel_number(deps, lease_id, count_failure=count_failure)


def close_open_leases(deps: Deps, session_id: str) -> list[str]:
    """Finish leases that got a code, cancel the rest; returns problems (never raises for one lease)."""
    problems: list[str] = []
    with deps.sessions.begin() as db:
        leases = [
            (row.id, row.outcome, row.activation_id) for row in lease_repo.leases_for_session(db, session_id)
        ]
    for lease_id, outcome, activation_id in leases:
        try:
            if outcome in (LeaseOutcome.CODE_RECEIVED, LeaseOutcome.ACTIVE, LeaseOutcome.CANCEL_PENDING):
                close_number(deps, lease_id, code_received=outcome == LeaseOutcome.CODE_RECEIVED)
            elif outcome in (LeaseOutcome.PENDING, LeaseOutcome.UNKNOWN) and not activation_id:
                problems.append(f"lease {lease_id}: purchase outcome unknown, left for reconciliation")
        except CancelDeferred as exc:
            problems.append(str(exc))
        except (ProviderError, IllegalLeaseTransition) as exc:
            problems.append(f"lease {lease_id}: {exc}")
    return problems
