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
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from providers.base import OpenActivation
from providers.errors import NotSupported, ProviderError
from provisioner.steps.deps import Deps, ProviderNotConfigured
from provisioner.store import LeaseOutcome, LeaseRow
from provisioner.store import repository as repo
from provisioner.store.leases import UNSETTLED_PURCHASE

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
        repo.set_lease_outcome(
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
        rows = repo.leases_for_session(db, session_id)
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
    """One lookup of an unknown purchase at its provider; records what it concluded.
    ``count``: a lookup that cannot decide counts against the lease's bounded retries."""
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, lease_id)
        if row.outcome == LeaseOutcome.PENDING and not row.activation_id:  # left by a crash mid-purchase
            row = repo.set_lease_outcome(db, lease_id, LeaseOutcome.UNKNOWN, provider_status="left pending")
        if row.outcome != LeaseOutcome.UNKNOWN or row.activation_id:
            return Resolved(
                Resolution.ADOPTED if row.activation_id else Resolution.NONE_SOLD, "already settled"
            )
        name, service, country = row.provider, row.service, row.country
        now = db.scalar(select(func.now()))
        window = (row.requested_at - CLOCK_SKEW, (row.call_ended_at or now) + CLOCK_SKEW)
        known = set(
            db.scalars(
                select(LeaseRow.activation_id).where(
                    LeaseRow.provider == name, LeaseRow.activation_id.is_not(None)
                )
            )
        )
        # Other purchases of the same kind whose outcome is not settled: (start, end) of each call.
        others = [
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
        ]
    try:
        listed = deps.provider(name).list_open_activations()
    except NotSupported:
        why = f"{name} cannot list open activations: check the account by hand for a {service}/{country} number bought around {window[0] + CLOCK_SKEW:%Y-%m-%d %H:%M:%S} UTC"
        return _undecided(deps, lease_id, Resolution.CANNOT_LIST, why, count=count, attention=why)
    except (ProviderError, ProviderNotConfigured) as exc:
        return _undecided(deps, lease_id, Resolution.UNDECIDED, f"lookup failed: {exc}", count=count)
    candidates = [
        a
        for a in listed
        if a.lease.activation_id not in known and a.service == service and a.country == country
    ]
    ours = [a for a in candidates if _inside(a, window)]
    if candidates and not ours:
        # Unexplained open activations of this kind, just not inside our window: never conclude
        # "nothing was sold" while one could be ours (a provider listing local times, say).
        why = f"{len(candidates)} unknown open {service}/{country} activation(s) at {name}, none inside the call's window"
        return _undecided(deps, lease_id, Resolution.UNDECIDED, why, count=count)
    if not ours:
        with deps.sessions.begin() as db:
            repo.set_lease_outcome(
                db,
                lease_id,
                LeaseOutcome.FAILED,
                provider_status=f"no purchase found at {name}: nothing was sold",
            )
        return Resolved(
            Resolution.NONE_SOLD, f"no open {service}/{country} activation at {name}: nothing was sold"
        )
    # Another unsettled purchase that could have bought the same activation: its call overlaps
    # ours, or (a list without purchase times) any at all.
    timed = all(a.bought_at is not None for a in ours)
    rivals = [
        o for o in others if not timed or (o[0] - CLOCK_SKEW <= window[1] and o[1] + CLOCK_SKEW >= window[0])
    ]
    if len(ours) > 1 or rivals:
        why = f"{len(ours)} unknown open activation(s) at {name}; {len(rivals)} other unsettled purchase(s)"
        return _undecided(deps, lease_id, Resolution.UNDECIDED, why, count=count)
    found = ours[0].lease
    if not found.phone:
        return _undecided(
            deps,
            lease_id,
            Resolution.UNDECIDED,
            f"activation {found.activation_id} has no number yet",
            count=count,
        )
    with deps.sessions.begin() as db:
        bought_at = ours[0].bought_at or db.get_one(LeaseRow, lease_id).requested_at
        repo.complete_lease(
            db,
            lease_id,
            repo.BoughtNumber(found.activation_id, found.phone, found.price, found.currency, bought_at),
            provider_status=f"adopted activation {found.activation_id} found at {name}",
        )
    log.info("lease %d: adopted activation %s found at %s", lease_id, found.activation_id, name)
    return Resolved(Resolution.ADOPTED, f"adopted activation {found.activation_id}")


def _inside(activation: OpenActivation, window: tuple[datetime, datetime]) -> bool:
    """Bought inside the call's window; a list without purchase times cannot exclude it."""
    return activation.bought_at is None or window[0] <= activation.bought_at <= window[1]


def _backoff(deps: Deps, retries: int) -> timedelta:
    config = deps.settings.reconcile
    return timedelta(seconds=min(config.lease_retry_max_s, config.lease_retry_s * (2**retries)))


def _undecided(
    deps: Deps, lease_id: int, resolution: Resolution, why: str, *, count: bool, attention: str | None = None
) -> Resolved:
    """Still unknown: look again after a backoff; after too many failed lookups, needs_attention."""
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, lease_id)
        retries = row.retries + (1 if count else 0)
        if retries >= deps.settings.reconcile.lease_retries:
            repo.set_lease_outcome(
                db,
                lease_id,
                LeaseOutcome.NEEDS_ATTENTION,
                provider_status=why,
                attention=f"purchase outcome unknown after {retries} lookups: {attention or why}",
                count_retry=count,
            )
            return Resolved(Resolution.GAVE_UP, f"{why}; needs attention after {retries} lookups")
        now = db.scalar(select(func.now()))
        repo.set_lease_outcome(
            db,
            lease_id,
            LeaseOutcome.UNKNOWN,
            provider_status=why,
            retry_after=now + _backoff(deps, retries),
            attention=attention,
            count_retry=count,
        )
    return Resolved(resolution, why)
