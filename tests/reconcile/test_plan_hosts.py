"""plan() over several Docker hosts and pair networks: a down host's sessions are orphaned and its
devices retired at once, a late host's are left alone, unused pair networks are removed."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from provisioner.reconciler import Kind, plan
from provisioner.reconciler.model import NetworkView, Reason
from provisioner.store import LeaseOutcome, State
from tests.reconcile.views import (
    GRACE,
    NOW,
    POLICY,
    SID,
    TICK,
    both,
    container,
    device,
    lease,
    observed,
    session,
)

OTHER = "sothersessio"
IDLE = "didledevice1"


def on_hosts(obs, *, down=(), late=(), hosts=None):
    """The observation with each device on its host (``hosts``: device id -> host, default h1)."""
    hosts = hosts or {}
    devices = [replace(d, host=hosts.get(d.id, "h1")) for d in obs.devices]
    return replace(obs, devices=devices, down_hosts=frozenset(down), late_hosts=frozenset(late))


def world(*sessions_and_devices):
    """Live sessions with their claimed devices (same ids) and, for each, no container listed."""
    sessions = [session(state, sid=sid) for sid, state in sessions_and_devices]
    return replace(
        observed(sessions, []), devices=[device(sid, holder=sid) for sid, _ in sessions_and_devices]
    )


class TestHostDown:
    @pytest.mark.parametrize("state", [State.AWAITING_NUMBER, State.AWAITING_CODE, State.VERIFIED])
    def test_a_live_session_on_a_down_host_is_orphaned_at_once_with_the_host_as_reason(self, state):
        obs = on_hosts(world((SID, state)), down={"h1"})
        actions = plan(obs, POLICY)
        assert [(a.kind, a.session_id, a.device_id, a.reason) for a in actions] == [
            (Kind.ORPHAN_SESSION, SID, SID, "host h1 down")
        ]

    def test_its_open_number_is_left_to_the_orphan_compensation(self):
        obs = replace(
            on_hosts(world((SID, State.AWAITING_CODE)), down={"h1"}), leases=[lease(LeaseOutcome.ACTIVE)]
        )
        assert [a.kind for a in plan(obs, POLICY)] == [Kind.ORPHAN_SESSION]

    def test_only_the_down_hosts_sessions_are_touched(self):
        obs = world((SID, State.VERIFIED), (OTHER, State.VERIFIED))
        obs = replace(obs, containers=both(OTHER))
        obs = on_hosts(obs, down={"h1"}, hosts={SID: "h1", OTHER: "h2"})
        assert [(a.kind, a.session_id, a.reason) for a in plan(obs, POLICY)] == [
            (Kind.ORPHAN_SESSION, SID, "host h1 down")
        ]

    def test_no_missing_device_grace_is_waited_for(self):
        """Without the host's state the same observation only notes the device missing."""
        obs = world((SID, State.VERIFIED))
        assert [a.kind for a in plan(on_hosts(obs), POLICY)] == [Kind.MARK_DEVICE_DOWN]
        assert [a.kind for a in plan(on_hosts(obs, down={"h1"}), POLICY)] == [Kind.ORPHAN_SESSION]

    @pytest.mark.parametrize("state", ["idle", "booting", "claimed"])
    def test_a_device_on_a_down_host_held_by_no_live_session_is_retired(self, state):
        obs = replace(observed([], []), devices=[device(IDLE, state=state, holder=None)])
        actions = plan(on_hosts(obs, down={"h1"}), POLICY)
        assert [(a.kind, a.device_id, a.reason) for a in actions] == [
            (Kind.RETIRE_DEVICE, IDLE, "host h1 down")
        ]

    def test_a_provisioning_sessions_device_is_left_to_its_provision(self):
        obs = on_hosts(world((SID, State.LAUNCHING)), down={"h1"})
        assert plan(obs, POLICY) == []

    def test_a_device_on_an_answering_host_is_not_retired(self):
        obs = replace(observed([], both(IDLE)), devices=[device(IDLE, state="idle", holder=None)])
        assert plan(on_hosts(obs, down={"h2"}), POLICY) == []


class TestHostLate:
    @pytest.mark.parametrize("down_for", [None, timedelta(hours=1)])
    def test_a_session_on_a_late_host_is_left_alone(self, down_for):
        """Silent within its grace: its containers are not listed, nothing is concluded from it,
        not even a device noted missing earlier and past the device grace."""
        obs = world((SID, State.VERIFIED))
        down = (down_for, "missing") if down_for else None
        obs = replace(obs, devices=[device(SID, holder=SID, down=down)])
        assert plan(on_hosts(obs, late={"h1"}), POLICY) == []

    def test_an_unheld_claimed_device_on_a_late_host_waits(self):
        obs = replace(observed([], []), devices=[device(IDLE, holder=None)])
        assert plan(on_hosts(obs, late={"h1"}), POLICY) == []
        assert [a.reason for a in plan(on_hosts(obs), POLICY)] == [Reason.DEVICE_UNHELD]

    def test_an_expired_session_on_a_late_host_is_still_released(self):
        obs = world((SID, State.VERIFIED))
        obs = replace(obs, sessions=[session(State.VERIFIED, expires_in=-TICK)])
        assert [a.kind for a in plan(on_hosts(obs, late={"h1"}), POLICY)] == [Kind.EXPIRE_SESSION]


def network(device_id: str = IDLE, *, age: timedelta | None = GRACE * 2) -> NetworkView:
    created = NOW - age if age is not None else None
    return NetworkView(f"prov-t-{device_id}-net", device_id, created)


class TestPairNetworks:
    def test_a_network_without_device_containers_or_rows_is_removed(self):
        obs = replace(observed([], []), networks=[network()])
        actions = plan(obs, POLICY)
        assert [(a.kind, a.device_id, a.network_name, a.reason) for a in actions] == [
            (Kind.REMOVE_NETWORK, IDLE, f"prov-t-{IDLE}-net", Reason.NETWORK_UNUSED)
        ]
        assert actions[0].target == f"prov-t-{IDLE}-net"

    def test_a_network_without_a_creation_time_counts_as_old(self):
        obs = replace(observed([], []), networks=[network(age=None)])
        assert [a.kind for a in plan(obs, POLICY)] == [Kind.REMOVE_NETWORK]

    def test_a_network_younger_than_the_grace_is_kept(self):
        """A launch creates the network just before the device's container."""
        obs = replace(observed([], []), networks=[network(age=GRACE - TICK)])
        assert plan(obs, POLICY) == []

    def test_a_live_devices_network_is_kept(self):
        obs = replace(
            observed([session(State.VERIFIED)], both()), devices=[device()], networks=[network(SID)]
        )
        assert plan(obs, POLICY) == []

    def test_a_network_whose_device_still_has_a_container_is_left_to_the_container_rule(self):
        """Removing the container (rule c) takes the network along."""
        obs = replace(observed([], [container("stream", sid=IDLE)]), networks=[network()])
        assert [a.kind for a in plan(obs, POLICY)] == [Kind.REMOVE_CONTAINER]

    def test_a_live_device_row_without_containers_keeps_its_network(self):
        """Its session's device rule acts first (noted missing, then orphaned and retired)."""
        obs = replace(world((SID, State.VERIFIED)), networks=[network(SID)])
        assert [a.kind for a in plan(obs, POLICY)] == [Kind.MARK_DEVICE_DOWN]
