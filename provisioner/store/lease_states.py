"""The number lease state machine: one table of allowed outcome changes, and nothing else decides.

    pending -> active <-> code_received -> finished      (<-: another code asked for)
       |         \\-> finished | cancelled | expired | cancel_pending -> cancelled | finished | expired
       |-> failed                                   (nothing was bought)
       \\-> unknown -> active (adopted) | failed (none was sold) | needs_attention

`unknown`: the purchase call got no clear answer (timeout, connection lost after sending, HTTP 5xx,
an unparseable reply), so a number may have been sold. Nothing is bought from that provider for
that session while a lease of it is unknown. `needs_attention`: automation gave up (the lookup or
the close failed too often); a person checks the provider account. The recorded outcome is what the
provider did: a close that ended as a finish is `finished`, never `cancelled`.
"""

from __future__ import annotations

import enum

from provisioner.store.state_table import IllegalChange, StateTable


class LeaseOutcome(enum.StrEnum):
    PENDING = "pending"  # written before the purchase call; activation_id is empty until it returns
    UNKNOWN = "unknown"  # the purchase call got no clear answer: maybe sold, looked up at the provider
    ACTIVE = "active"  # bought (or adopted), waiting for the code
    CODE_RECEIVED = "code_received"
    CANCEL_PENDING = "cancel_pending"  # the provider refused the cancel for now; retried later
    FINISHED = "finished"  # closed with the charge standing
    CANCELLED = "cancelled"  # refunded
    EXPIRED = "expired"  # the provider ended the rental
    FAILED = "failed"  # nothing was bought (refused, or an unknown purchase found not to have happened)
    NEEDS_ATTENTION = "needs_attention"  # retried too often: a person must check the provider account


LO = LeaseOutcome
LEASE_ALLOWED: dict[LeaseOutcome, frozenset[LeaseOutcome]] = {
    LO.PENDING: frozenset({LO.ACTIVE, LO.FAILED, LO.UNKNOWN}),
    # unknown -> unknown: a lookup that could not decide yet (counted, retried with backoff).
    LO.UNKNOWN: frozenset({LO.UNKNOWN, LO.ACTIVE, LO.FAILED, LO.NEEDS_ATTENTION}),
    LO.ACTIVE: frozenset(
        {LO.CODE_RECEIVED, LO.FINISHED, LO.CANCELLED, LO.EXPIRED, LO.CANCEL_PENDING, LO.NEEDS_ATTENTION}
    ),
    # code_received -> active: another code was asked for (the lease waits again).
    LO.CODE_RECEIVED: frozenset({LO.ACTIVE, LO.FINISHED, LO.EXPIRED, LO.CANCEL_PENDING, LO.NEEDS_ATTENTION}),
    # cancel_pending -> cancel_pending: refused again (counted, retried with backoff).
    LO.CANCEL_PENDING: frozenset(
        {LO.CANCEL_PENDING, LO.CANCELLED, LO.FINISHED, LO.EXPIRED, LO.NEEDS_ATTENTION}
    ),
    # A person (or a later lookup) settles it.
    LO.NEEDS_ATTENTION: frozenset({LO.ACTIVE, LO.FAILED, LO.CANCELLED, LO.FINISHED, LO.EXPIRED}),
    LO.FINISHED: frozenset(),
    LO.CANCELLED: frozenset(),
    LO.EXPIRED: frozenset(),
    LO.FAILED: frozenset(),
}


class IllegalLeaseTransition(IllegalChange):
    """An outcome change the lease table does not allow."""


LEASES = StateTable("lease", LEASE_ALLOWED, IllegalLeaseTransition, change="outcome change", ended="closed")
CLOSED_LEASE_OUTCOMES: frozenset[LeaseOutcome] = LEASES.terminal
check_lease_transition = LEASES.check
# May still hold a number or money at a provider and is handled by automation.
OPEN_LEASE_OUTCOMES: frozenset[LeaseOutcome] = frozenset(
    {LO.PENDING, LO.UNKNOWN, LO.ACTIVE, LO.CODE_RECEIVED, LO.CANCEL_PENDING}
)
# A person must look at these (leases still unknown but flagged are listed too: see
# store.leases.leases_needing_attention).
ATTENTION_LEASE_OUTCOMES: frozenset[LeaseOutcome] = frozenset({LO.NEEDS_ATTENTION})
# Blocks buying again from the same provider for the same session.
UNSETTLED_PURCHASE: frozenset[LeaseOutcome] = frozenset({LO.PENDING, LO.UNKNOWN, LO.NEEDS_ATTENTION})
