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

from provisioner.store.state_table import IllegalChange, StateTable


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


class IllegalTransition(IllegalChange):
    """A session transition the table does not allow."""


SESSIONS = StateTable("session", ALLOWED, IllegalTransition)
TERMINAL: frozenset[State] = SESSIONS.terminal
check_transition = SESSIONS.check

# Ended or being ended: nothing new (a number, a container) may start for a session in these.
ENDING: frozenset[State] = TERMINAL | {State.RELEASING}
# A provision flow run is in charge of these; if it dies, the reconciler compensates.
PROVISIONING: frozenset[State] = frozenset(
    {S.REQUESTED, S.NUMBER_ACQUIRED, S.LAUNCHING, S.AWAITING_NUMBER, S.AWAITING_CODE}
)
# The session holds a ready device: both containers must exist and run, the stream is served.
LIVE: frozenset[State] = frozenset({S.AWAITING_NUMBER, S.AWAITING_CODE, S.VERIFIED})
