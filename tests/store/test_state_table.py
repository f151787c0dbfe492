"""The one StateTable type and the four machines declared with it (sessions, devices, hosts,
leases): every state has a row, targets stay inside the machine, one check, the exact errors."""

from __future__ import annotations

import enum

import pytest

from provisioner.store.device_states import DEVICES, DeviceState, IllegalDeviceTransition
from provisioner.store.host_states import HOSTS, HostState, IllegalHostTransition
from provisioner.store.lease_states import LEASES, IllegalLeaseTransition, LeaseOutcome
from provisioner.store.state_table import IllegalChange, StateTable
from provisioner.store.states import SESSIONS, IllegalTransition, State

MACHINES = [
    (SESSIONS, State, IllegalTransition),
    (DEVICES, DeviceState, IllegalDeviceTransition),
    (HOSTS, HostState, IllegalHostTransition),
    (LEASES, LeaseOutcome, IllegalLeaseTransition),
]
IDS = ["sessions", "devices", "hosts", "leases"]


@pytest.mark.parametrize(("table", "states", "error"), MACHINES, ids=IDS)
class TestMachines:
    def test_every_state_has_a_row_and_every_target_is_a_state(self, table, states, error):
        assert set(table.allowed) == set(states)
        assert all(targets <= set(states) for targets in table.allowed.values())

    def test_terminal_states_are_the_ones_without_exits(self, table, states, error):
        assert table.terminal == {s for s in states if not table.allowed[s]}

    def test_every_pair_is_allowed_exactly_when_the_table_says(self, table, states, error):
        for a in states:
            for b in states:
                if b in table.allowed[a]:
                    table.check("k", a, b)
                else:
                    with pytest.raises(error) as info:
                        table.check("k", a, b)
                    assert (info.value.key, info.value.from_state, info.value.to_state) == ("k", a, b)

    def test_its_error_is_its_own(self, table, states, error):
        assert issubclass(error, IllegalChange)
        others = {e for _, _, e in MACHINES} - {error}
        assert not any(issubclass(error, other) for other in others)


@pytest.mark.parametrize(
    ("table", "key", "a", "b", "message"),
    [
        (
            SESSIONS,
            "s1",
            State.RELEASED,
            State.VERIFIED,
            "session s1: illegal transition released -> verified (allowed from released: none: it is terminal)",
        ),
        (
            DEVICES,
            "d1",
            DeviceState.CLAIMED,
            DeviceState.IDLE,
            "device d1: illegal transition claimed -> idle (allowed from claimed: failed, retired)",
        ),
        (
            HOSTS,
            "h1",
            HostState.ACTIVE,
            HostState.ACTIVE,
            "host h1: illegal transition active -> active (allowed from active: down, draining)",
        ),
        (
            LEASES,
            7,
            LeaseOutcome.FAILED,
            LeaseOutcome.ACTIVE,
            "lease 7: illegal outcome change failed -> active (allowed from failed: none: it is closed)",
        ),
    ],
    ids=IDS,
)
def test_the_error_names_the_thing_both_states_and_what_is_allowed(table, key, a, b, message):
    with pytest.raises(IllegalChange) as info:
        table.check(key, a, b)
    assert str(info.value) == message


def test_a_table_is_declared_as_data():
    class Light(enum.StrEnum):
        ON = "on"
        OFF = "off"
        BROKEN = "broken"

    class IllegalLight(IllegalChange):
        pass

    table = StateTable(
        "light",
        {
            Light.ON: frozenset({Light.OFF, Light.BROKEN}),
            Light.OFF: frozenset({Light.ON}),
            Light.BROKEN: frozenset(),
        },
        IllegalLight,
        change="switch",
        ended="broken for good",
    )
    assert table.terminal == {Light.BROKEN}
    table.check(1, Light.OFF, Light.ON)
    with pytest.raises(
        IllegalLight,
        match=r"^light 1: illegal switch broken -> on \(allowed from broken: none: it is broken for good\)$",
    ):
        table.check(1, Light.BROKEN, Light.ON)
