"""The session state machine: one table of allowed transitions, and nothing else decides.

    requested -> [launching ->] awaiting_number -> awaiting_code -> verified -> releasing -> released
                                                                                         \\-> expired

The device comes first: a session claims an idle pool device (straight to awaiting_number, its
screen usable) or cold-boots one (launching), and only then rents its number. number_acquired is
the older order (number, then device), still valid for sessions written by it.

Any non-terminal state may end in failed or cancelled; a session with containers may become
orphaned when its device vanished. Terminal states never change again.
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    REQUESTED = "requested"
    NUMBER_ACQUIRED = "number_acquired"
    LAUNCHING = "launching"
    AWAITING_NUMBER = "awaiting_number"
    AWAITING_CODE = "awaiting_code"
    VERIFIED = "verified"
    RELEASING = "releasing"
    RELEASED = "released"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ORPHANED = "orphaned"


S = State
ALLOWED: dict[State, frozenset[State]] = {
    S.REQUESTED: frozenset({S.LAUNCHING, S.AWAITING_NUMBER, S.NUMBER_ACQUIRED, S.FAILED, S.CANCELLED}),
    S.NUMBER_ACQUIRED: frozenset({S.LAUNCHING, S.FAILED, S.CANCELLED}),
    S.LAUNCHING: frozenset({S.AWAITING_NUMBER, S.AWAITING_CODE, S.FAILED, S.CANCELLED, S.ORPHANED}),
    S.AWAITING_NUMBER: frozenset({S.AWAITING_CODE, S.FAILED, S.CANCELLED, S.ORPHANED}),
    S.AWAITING_CODE: frozenset({S.VERIFIED, S.RELEASING, S.FAILED, S.CANCELLED, S.ORPHANED}),
    S.VERIFIED: frozenset({S.RELEASING, S.FAILED, S.ORPHANED}),
    S.RELEASING: frozenset({S.RELEASED, S.EXPIRED, S.FAILED}),
    S.RELEASED: frozenset(),
    S.EXPIRED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.ORPHANED: frozenset(),
}

TERMINAL: frozenset[State] = frozenset(state for state, targets in ALLOWED.items() if not targets)
# Ended or being ended: nothing new (a number, a container) may start for a session in these.
ENDING: frozenset[State] = TERMINAL | {State.RELEASING}
# A provision flow run is in charge of these; if it dies, the reconciler compensates.
PROVISIONING: frozenset[State] = frozenset(
    {S.REQUESTED, S.NUMBER_ACQUIRED, S.LAUNCHING, S.AWAITING_NUMBER, S.AWAITING_CODE}
)
# The session holds a ready device: both containers must exist and run, the stream is served.
LIVE: frozenset[State] = frozenset({S.AWAITING_NUMBER, S.AWAITING_CODE, S.VERIFIED})


class IllegalTransition(Exception):
    """A transition the table does not allow."""

    def __init__(self, session_id: str, from_state: State, to_state: State) -> None:
        self.session_id = session_id
        self.from_state = from_state
        self.to_state = to_state
        allowed = ", ".join(sorted(ALLOWED[from_state])) or "none: it is terminal"
        super().__init__(
            f"session {session_id}: illegal transition {from_state} -> {to_state} (allowed from {from_state}: {allowed})"
        )


def check_transition(session_id: str, from_state: State, to_state: State) -> None:
    if to_state not in ALLOWED[from_state]:
        raise IllegalTransition(session_id, from_state, to_state)
