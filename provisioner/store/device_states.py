"""The device state machine: one table of allowed transitions, and nothing else decides.

    booting -> idle -> claimed -> retired
         \\--------------^      (a cold boot for a waiting session goes straight to claimed)

Any non-terminal state may end in failed (it never became usable, or died) or retired (removed on
purpose). A claimed device is never returned to the pool: release retires it, the pool refills.
"""

from __future__ import annotations

import enum

from provisioner.store.state_table import IllegalChange, StateTable


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


class IllegalDeviceTransition(IllegalChange):
    """A device transition the table does not allow."""


DEVICES = StateTable("device", DEVICE_ALLOWED, IllegalDeviceTransition)
DEVICE_TERMINAL: frozenset[DeviceState] = DEVICES.terminal
check_device_transition = DEVICES.check
