"""Purchases whose outcome is unknown: find out at the provider what a purchase call really did.

A purchase call that got no clear answer (timeout, connection lost after sending, HTTP 5xx, an
unparseable reply) leaves its lease `unknown`. It is resolved by listing the account's open
activations (SMS-Activate `getActiveActivations`, OnlineSim `getState` without tzid):

- exactly one open activation of the same service and country, bought inside the call's time
  window, known to no other lease, while no other unsettled purchase of that kind overlaps it
  (or, when the list gives no purchase times, exists at all): adopted
  (the lease becomes `active` with that activation);
- no unknown open activation of that service and country at all: nothing was sold (`failed`);
- anything less certain: the lease stays `unknown`, the lookup is retried with backoff, and after
  `reconcile.lease_retries` failed lookups it becomes `needs_attention`.

A provider that cannot list keeps the lease `unknown`, flagged for a person (`attention`), and
reconciliation retries the lookup the same bounded way. Nothing is ever bought again from that
provider for that session while the lease is unsettled.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select

from providers.base import OpenActivation
from providers.errors import NotSupported, ProviderError
from provisioner.steps.deps import Deps, ProviderNotConfigured
from provisioner.store import LeaseOutcome, LeaseRow
from provisioner.store import leases as lease_repo
from provisioner.store.lease_states import UNSETTLED_PURCHASE

log = logging.getLogger(__name__)

# Allowed difference between our clock and the provider's when matching purchase times.
CLOCK_SKEW = timedelta(seconds=120)
# Immediate resolution: a purchase of the same kind still in flight settles within a second or two.
NOW_TRIES = 3
NOW_PAUSE_S = 1.0


class Resolution(enum.StrEnum):
    ADOPTED = "adopted"  # the lost purchase was found: the lease is active
    NONE_SOLD = "none_sold"  # nothing was sold: the lease is failed
    UNDECIDED = "undecided"  # not certain yet: still unknown, looked up again later
    CANNOT_LIST = "cannot_list"  # the provider cannot list: still unknown, flagged for a person
    GAVE_UP = "gave_up"  # too many failed lookups: needs_attention


@dataclass(frozen=True)
class Resolved:
    resolution: Resolution
    detail: str


def mark_unknown(deps: Deps, lease_id: int, exc: ProviderError) -> None:
    """The purchase call got no clear answer: the lease is unknown (maybe sold)."""
    with deps.sessions.begin() as db:
        lease_repo.set_lease_outcome(
            db,
            lease_id,
            LeaseOutcome.UNKNOWN,
            provider_status=f"{type(exc).__name__}: {exc}",
            # Keeps reconciliation off it while the provision resolves it itself.
            retry_after=db.scalar(select(func.now())) + _backoff(deps, 0),
        )
    log.warning("lease %d: %s", lease_id, exc)


def unsettled_providers(deps: Deps, session_id: str) -> dict[str, int]:
    """Providers with a purchase of this session whose outcome is not known yet -> that lease id."""
    with deps.sessions() as db:
        rows = lease_repo.leases_for_session(db, session_id)
    return {
        row.provider: row.id for row in rows if row.outcome in UNSETTLED_PURCHASE and not row.activation_id
    }


def resolve_now(deps: Deps, lease_id: int, *, sleep: Callable[[float], None] = time.sleep) -> Resolved:
    """Resolve a just-failed purchase at once: a few quick lookups (an in-flight purchase of the
    same kind settles in moments), without counting them against the lease's retries."""
    resolved = Resolved(Resolution.UNDECIDED, "not looked up")
    for attempt in range(NOW_TRIES):
        resolved = resolve_unknown(deps, lease_id, count=attempt == NOW_TRIES - 1)
        if resolved.resolution != Resolution.UNDECIDED:
            return resolved
        sleep(NOW_PAUSE_S)
    return resolved


def resolve_unknown(deps: Deps, lease_id: int, *, count: bool = True) -> Resolved:
    """One lookup of an unknown purchase at its provider (observe -> decide -> record).
    ``count``: a lookup that cannot decide counts against the lease's bounded retries."""
    observed = observe_unknown(deps, lease_id)
    if isinstance(observed, Resolved):
        return observed
    return record_decision(deps, lease_id, decide_unknown(observed), count=count)


@dataclass(frozen=True)
class UnknownPurchase:
    """What is known about one unknown purchase: its call, the other purchases, the provider's list."""

    provider: str
    service: str
    country: str
    requested_at: datetime  # the purchase call started
    call_ended_at: datetime  # it ended (now, when it never recorded an end)
    known: frozenset[str]  # activation ids some lease at this provider already holds
    # (start, end) of each other unsettled purchase of the same provider, service and country
    others: tuple[tuple[datetime, datetime], ...]
    listed: tuple[OpenActivation, ...] = ()  # the provider's open activations
    cannot_list: bool = False  # the provider's protocol has no list
    lookup_failed: str | None = None  # the list call failed: why

    @property
    def window(self) -> tuple[datetime, datetime]:
        """When a purchase made by this call can have been bought, allowing for clock skew."""
        return (self.requested_at - CLOCK_SKEW, self.call_ended_at + CLOCK_SKEW)


@dataclass(frozen=True)
class Decision:
    """What one lookup concluded, and what to record: ``status`` on the lease, ``attention`` for a
    person, ``adopt`` the activation that becomes the lease's."""

    resolution: Resolution  # never GAVE_UP: giving up is decided by the retry count (decide_retry)
    detail: str
    status: str
    adopt: OpenActivation | None = None
    attention: str | None = None


def decide_unknown(observed: UnknownPurchase) -> Decision:
    """The adoption rule: adopt the one open activation that can only be this purchase, conclude
    "nothing was sold" only when no unexplained activation of its kind is open, else undecided."""
    o = observed
    name, kind = o.provider, f"{o.service}/{o.country}"
    if o.cannot_list:
        why = (
            f"{name} cannot list open activations: check the account by hand for a {kind} number "
            f"bought around {o.requested_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        return Decision(Resolution.CANNOT_LIST, why, why, attention=why)
    if o.lookup_failed is not None:
        why = f"lookup failed: {o.lookup_failed}"
        return Decision(Resolution.UNDECIDED, why, why)
    window = o.window
    candidates = [
        a
        for a in o.listed
        if a.lease.activation_id not in o.known and a.service == o.service and a.country == o.country
    ]
    ours = [a for a in candidates if _inside(a, window)]
    if candidates and not ours:
        # Unexplained open activations of this kind, just not inside our window: never conclude
        # "nothing was sold" while one could be ours (a provider listing local times, say).
        why = f"{len(candidates)} unknown open {kind} activation(s) at {name}, none inside the call's window"
        return Decision(Resolution.UNDECIDED, why, why)
    if not ours:
        return Decision(
            Resolution.NONE_SOLD,
            f"no open {kind} activation at {name}: nothing was sold",
            f"no purchase found at {name}: nothing was sold",
        )
    # Another unsettled purchase that could have bought the same activation: its call overlaps
    # ours, or (a list without purchase times) any at all.
    timed = all(a.bought_at is not None for a in ours)
    rivals = [
        (start, end)
        for start, end in o.others
        if not timed or (start - CLOCK_SKEW <= window[1] and end + CLOCK_SKEW >= window[0])
    ]
    if len(ours) > 1 or rivals:
        why = f"{len(ours)} unknown open activation(s) at {name}; {len(rivals)} other unsettled purchase(s)"
        return Decision(Resolution.UNDECIDED, why, why)
    found = ours[0]
    if not found.lease.phone:
        why = f"activation {found.lease.activation_id} has no number yet"
        return Decision(Resolution.UNDECIDED, why, why)
    return Decision(
        Resolution.ADOPTED,
        f"adopted activation {found.lease.activation_id}",
        f"adopted activation {found.lease.activation_id} found at {name}",
        adopt=found,
    )


def decide_retry(retries: int, *, count: bool, limit: int) -> tuple[int, bool]:
    """An undecided lookup: the failed lookups counted so far, and whether to give up (at ``limit``)."""
    retries += 1 if count else 0
    return retries, retries >= limit


def backoff(retries: int, *, base_s: float, max_s: float) -> timedelta:
    """Wait before the next lookup after ``retries`` failed ones: doubling, capped."""
    return timedelta(seconds=min(max_s, base_s * (2**retries)))


def observe_unknown(deps: Deps, lease_id: int) -> UnknownPurchase | Resolved:
    """Read the lease, the other leases of its provider and the provider's open activations; a
    lease settled meanwhile is returned as Resolved. A lease left pending by a crash mid-purchase
    is recorded unknown first."""
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, lease_id)
        if row.outcome == LeaseOutcome.PENDING and not row.activation_id:  # left by a crash mid-purchase
            row = lease_repo.set_lease_outcome(
                db, lease_id, LeaseOutcome.UNKNOWN, provider_status="left pending"
            )
        if row.outcome != LeaseOutcome.UNKNOWN or row.activation_id:
            return Resolved(
                Resolution.ADOPTED if row.activation_id else Resolution.NONE_SOLD, "already settled"
            )
        name, service, country = row.provider, row.service, row.country
        now = db.scalar(select(func.now()))
        known = frozenset(
            db.scalars(
                select(LeaseRow.activation_id).where(
                    LeaseRow.provider == name, LeaseRow.activation_id.is_not(None)
                )
            )
        )
        others = tuple(
            (r.requested_at, r.call_ended_at or now)
            for r in db.execute(
                select(LeaseRow.requested_at, LeaseRow.call_ended_at).where(
                    LeaseRow.provider == name,
                    LeaseRow.service == service,
                    LeaseRow.country == country,
                    LeaseRow.id != lease_id,
                    LeaseRow.activation_id.is_(None),
                    LeaseRow.outcome.in_([o.value for o in UNSETTLED_PURCHASE]),
                )
            )
        )
        observed = UnknownPurchase(
            provider=name,
            service=service,
            country=country,
            requested_at=row.requested_at,
            call_ended_at=row.call_ended_at or now,
            known=known,
            others=others,
        )
    try:
        return replace(observed, listed=tuple(deps.provider(name).list_open_activations()))
    except NotSupported:
        return replace(observed, cannot_list=True)
    except (ProviderError, ProviderNotConfigured) as exc:
        return replace(observed, lookup_failed=str(exc))


def record_decision(deps: Deps, lease_id: int, decision: Decision, *, count: bool) -> Resolved:
    """Write what a lookup decided into the lease."""
    if decision.resolution == Resolution.NONE_SOLD:
        with deps.sessions.begin() as db:
            lease_repo.set_lease_outcome(db, lease_id, LeaseOutcome.FAILED, provider_status=decision.status)
        return Resolved(Resolution.NONE_SOLD, decision.detail)
    if decision.adopt is not None:
        found = decision.adopt.lease
        with deps.sessions.begin() as db:
            bought_at = decision.adopt.bought_at or db.get_one(LeaseRow, lease_id).requested_at
            lease_repo.complete_lease(
                db,
                lease_id,
                lease_repo.BoughtNumber(
                    found.activation_id, found.phone, found.price, found.currency, bought_at
                ),
                provider_status=decision.status,
            )
        log.info("lease %d: %s", lease_id, decision.status)
        return Resolved(Resolution.ADOPTED, decision.detail)
    return _undecided(deps, lease_id, decision, count=count)


def _inside(activation: OpenActivation, window: tuple[datetime, datetime]) -> bool:
    """Bought inside the call's window; a list without purchase times cannot exclude it."""
    return activation.bought_at is None or window[0] <= activation.bought_at <= window[1]


def _backoff(deps: Deps, retries: int) -> timedelta:
    config = deps.settings.reconcile
    return backoff(retries, base_s=config.lease_retry_s, max_s=config.lease_retry_max_s)


def _undecided(deps: Deps, lease_id: int, decision: Decision, *, count: bool) -> Resolved:
    """Still unknown: look again after a backoff; after too many failed lookups, needs_attention."""
    why = decision.status
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, lease_id)
        retries, give_up = decide_retry(row.retries, count=count, limit=deps.settings.reconcile.lease_retries)
        if give_up:
            lease_repo.set_lease_outcome(
                db,
                lease_id,
                LeaseOutcome.NEEDS_ATTENTION,
                provider_status=why,
                attention=f"purchase outcome unknown after {retries} lookups: {decision.attention or why}",
                count_retry=count,
            )
            return Resolved(Resolution.GAVE_UP, f"{why}; needs attention after {retries} lookups")
        now = db.scalar(select(func.now()))
        lease_repo.set_lease_outcome(
            db,
            lease_id,
            LeaseOutcome.UNKNOWN,
            provider_status=why,
            retry_after=now + _backoff(deps, retries),
            attention=decision.attention,
            count_retry=count,
        )
    return Resolved(decision.resolution, why)
