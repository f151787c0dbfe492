"""Reconciliation sees every host: one list call per engine; a silent engine's host goes down
after the grace period and comes back when it answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from provisioner.runtime import load_profiles
from provisioner.runtime.hosts import HostEngines
from provisioner.runtime.table import observe_hosts
from provisioner.store import hosts as hostrepo
from tests.plugins.docker_engine import (
    STREAM_IMAGE,
    TEST_NETWORK,
    TEST_PROFILES_FILE,
    new_session_id_for_tests,
    new_test_instance_id,
)
from tests.plugins.docker_hosts import engine_stopped

pytestmark = [pytest.mark.docker, pytest.mark.multihost]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_silent_engine_marks_its_host_down_after_the_grace(db, extra_engines):
    runtimes = HostEngines(
        instance_id=new_test_instance_id(),
        network=TEST_NETWORK,
        stream_image=STREAM_IMAGE,
        profiles=load_profiles(TEST_PROFILES_FILE),
        # A stopped engine refuses at once; the running ones must answer within this even on two
        # loaded cores (2 s timed out once at load average 25).
        timeout_s=20.0,
    )
    devices = {}
    for engine in extra_engines:
        hostrepo.add_host(
            db,
            name=engine.name,
            **engine.host_fields(),
            stream_address=engine.stream_address,
            cpus=2,
            memory_mb=2048,
        )
        device_id = new_session_id_for_tests()
        runtimes.runtime(engine.engine()).launch_device(device_id, "stub")
        devices[engine.name] = device_id
    db.commit()
    first, second = extra_engines

    seen = observe_hosts(db, runtimes, now=T0, grace_s=10)
    db.commit()
    assert seen.down == frozenset()
    assert {host: [c.device_id for c in found] for host, found in seen.containers.items()} == {
        host: [device_id] for host, device_id in devices.items()
    }

    with engine_stopped(second):
        seen = observe_hosts(db, runtimes, now=T0 + timedelta(seconds=1), grace_s=10)
        db.commit()
        assert (set(seen.containers), set(seen.silent), seen.down) == (
            {first.name},
            {second.name},
            frozenset(),
        )
        assert hostrepo.get_host(db, second.name).state == "active"  # within the grace
        seen = observe_hosts(db, runtimes, now=T0 + timedelta(seconds=12), grace_s=10)
        db.commit()
        assert seen.down == frozenset({second.name})
        row = hostrepo.get_host(db, second.name)
        assert row.state == "down"
        assert row.last_seen_at == T0
    seen = observe_hosts(db, runtimes, now=T0 + timedelta(seconds=30), grace_s=10)
    db.commit()
    assert seen.down == frozenset()
    assert hostrepo.get_host(db, second.name).state == "active"
    assert seen.containers[second.name] == []  # the restarted engine was emptied by the fixture
    runtimes.close()
