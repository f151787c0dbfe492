"""The Docker host state machine: one table of allowed transitions, and nothing else decides.

    active <-> draining      (an operator: `provisioner hosts drain` / `hosts add` again)
    active | draining -> down (reconciliation: the engine did not answer for the grace period)
    down -> active | draining (the engine answers again; a drained host stays draining)

Placement gives new devices to active hosts only; a draining host keeps its devices until they end.
"""

from __future__ import annotations

import enum


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


class IllegalHostTransition(Exception):
    """A host transition the table does not allow."""

    def __init__(self, name: str, from_state: HostState, to_state: HostState) -> None:
        self.name = name
        self.from_state = from_state
        self.to_state = to_state
        allowed = ", ".join(sorted(HOST_ALLOWED[from_state]))
        super().__init__(f"host {name}: illegal transition {from_state} -> {to_state} (allowed: {allowed})")


def check_host_transition(name: str, from_state: HostState, to_state: HostState) -> None:
    if to_state not in HOST_ALLOWED[from_state]:
        raise IllegalHostTransition(name, from_state, to_state)
