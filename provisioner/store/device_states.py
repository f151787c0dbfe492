"""The device state machine: one table of allowed transitions, and nothing else decides.

    booting -> idle -> claimed -> retired
         \\--------------^      (a cold boot for a waiting session goes straight to claimed)

Any non-terminal state may end in failed (it never became usable, or died) or retired (removed on
purpose). A claimed device is never returned to the pool: release retires it, the pool refills.
"""

from __future__ import annotations

import enum


class DeviceState(enum.StrEnum):
    BOOTING = "booting"
    IDLE = "idle"
    CLAIMED = "claimed"
    RETIRED = "retired"
    FAILED = "failed"


D = DeviceState
DEVICE_ALLOWED: dict[DeviceState, frozenset[DeviceState]] = {
    D.BOOTING: frozenset({D.IDLE, D.CLAIMED, D.RETIRED, D.FAILED}),
    D.IDLE: frozenset({D.CLAIMED, D.RETIRED, D.FAILED}),
    D.CLAIMED: frozenset({D.RETIRED, D.FAILED}),
    D.RETIRED: frozenset(),
    D.FAILED: frozenset(),
}
DEVICE_TERMINAL: frozenset[DeviceState] = frozenset(s for s, targets in DEVICE_ALLOWED.items() if not targets)


class IllegalDeviceTransition(Exception):
    """A device transition the table does not allow."""

    def __init__(self, device_id: str, from_state: DeviceState, to_state: DeviceState) -> None:
        self.device_id = device_id
        self.from_state = from_state
        self.to_state = to_state
        allowed = ", ".join(sorted(DEVICE_ALLOWED[from_state])) or "none: it is terminal"
        super().__init__(
            f"device {device_id}: illegal transition {from_state} -> {to_state} (allowed from {from_state}: {allowed})"
        )


def check_device_transition(device_id: str, from_state: DeviceState, to_state: DeviceState) -> None:
    if to_state not in DEVICE_ALLOWED[from_state]:
        raise IllegalDeviceTransition(device_id, from_state, to_state)
