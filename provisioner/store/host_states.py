"""The Docker host state machine: one table of allowed transitions, and nothing else decides.

    active <-> draining      (an operator: `provisioner hosts drain` / `hosts add` again)
    active | draining -> down (reconciliation: the engine did not answer for the grace period)
    down -> active | draining (the engine answers again; a drained host stays draining)

Placement gives new devices to active hosts only; a draining host keeps its devices until they end.
"""

from __future__ import annotations

import enum

from provisioner.store.state_table import IllegalChange, StateTable


class HostState(enum.StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"
    DOWN = "down"


H = HostState
HOST_ALLOWED: dict[HostState, frozenset[HostState]] = {
    H.ACTIVE: frozenset({H.DRAINING, H.DOWN}),
    H.DRAINING: frozenset({H.ACTIVE, H.DOWN}),
    H.DOWN: frozenset({H.ACTIVE, H.DRAINING}),
}


class IllegalHostTransition(IllegalChange):
    """A host transition the table does not allow."""


HOSTS = StateTable("host", HOST_ALLOWED, IllegalHostTransition)
check_host_transition = HOSTS.check
