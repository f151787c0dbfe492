"""plan_pool(observed) as tables: what the pool boots and retires, no Docker, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from provisioner.pool import PoolDevice, PoolObserved, bounds, plan_pool
from provisioner.pool.plan import PoolKind
from provisioner.runtime.profiles import builtin_profiles

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
PROFILES = builtin_profiles()
PROFILES["stub-slow"] = PROFILES["stub-slow"].model_copy(update={"max_age_s": 3600.0})


def dev(
    i: int,
    *,
    state: str = "idle",
    profile: str = "stub-slow",
    held: bool = False,
    age: timedelta = timedelta(minutes=5),
    container: str | None = "running",
    health: str | None = "healthy",
    host: str = "local",
) -> PoolDevice:
    return PoolDevice(f"d{i:011d}", profile, state, held, NOW - age, NOW - age, container, health, host)


def run(devices, wanted, capacity: int = 20, cool_down_s: float = 0.0):
    return [
        (a.kind, a.profile, a.device_id)
        for a in plan_pool(PoolObserved(NOW, devices), wanted, PROFILES, capacity, cool_down_s)
    ]


BOOT, RETIRE = PoolKind.BOOT, PoolKind.RETIRE


class TestBounds:
    def test_setting_overrides_the_profiles(self):
        profiles = {**PROFILES, "stub": PROFILES["stub"].model_copy(update={"warm": 1})}
        assert bounds(profiles, None, None) == {"stub": (1, 1)}
        assert bounds(profiles, {"stub-slow": 2, "android": 0}, None) == {"stub-slow": (2, 2)}

    def test_max_comes_from_warm_max_or_its_setting_and_never_below_min(self):
        profiles = {**PROFILES, "stub": PROFILES["stub"].model_copy(update={"warm": 1, "warm_max": 6})}
        assert bounds(profiles, None, None) == {"stub": (1, 6)}
        assert bounds(profiles, None, {"stub-slow": 4}) == {"stub": (1, 1), "stub-slow": (0, 4)}
        assert bounds(profiles, {"stub": 3}, {"stub": 2}) == {"stub": (3, 3)}


class TestPlan:
    def test_empty_pool_boots_the_wanted_count(self):
        assert run([], {"stub-slow": 2}) == [(BOOT, "stub-slow", None)] * 2

    def test_booting_devices_count_and_held_ones_do_not(self):
        devices = [dev(1, state="booting", age=timedelta(seconds=5)), dev(2, held=True, state="claimed")]
        assert run(devices, {"stub-slow": 2}) == [(BOOT, "stub-slow", None)]

    def test_full_pool_does_nothing(self):
        assert run([dev(1), dev(2)], {"stub-slow": 2}) == []

    @pytest.mark.parametrize(
        ("device", "why"),
        [
            (dev(1, age=timedelta(hours=1)), "max age"),
            (dev(1, state="booting", age=timedelta(seconds=241), container="running"), "booter died"),
        ],
    )
    def test_unusable_idle_device_is_replaced(self, device, why):
        actions = plan_pool(PoolObserved(NOW, [device]), {"stub-slow": 1}, PROFILES, 20)
        assert [(a.kind, a.device_id) for a in actions] == [(RETIRE, device.id), (BOOT, None)]
        assert why in actions[0].reason

    @pytest.mark.parametrize(
        "device",
        [
            dev(1, health="unhealthy"),
            dev(1, container="exited"),
            dev(1, container="paused"),
            dev(1, container=None),
        ],
    )
    def test_a_down_idle_device_is_left_to_the_device_down_rule(self, device):
        """Reconciliation's rule (reconciler.down) retires it once down past the grace; until then
        it counts as the pool's (it may come back), so no second device is booted for it."""
        assert run([device], {"stub-slow": 1}) == []

    def test_extras_beyond_wanted_are_retired_oldest_first(self):
        old, new = dev(1, age=timedelta(minutes=30)), dev(2)
        assert run([new, old], {"stub-slow": 1}) == [(RETIRE, "stub-slow", old.id)]
        assert run([new, old], {}) == [(RETIRE, "stub-slow", old.id), (RETIRE, "stub-slow", new.id)]

    @pytest.mark.parametrize(
        ("idle_s", "retired"), [(299, False), (300, True)], ids=["cooling", "cooled down"]
    )
    def test_an_extra_is_retired_only_once_idle_for_the_cool_down(self, idle_s, retired):
        extra = dev(1, age=timedelta(seconds=idle_s))
        assert run([extra], {}, cool_down_s=300) == ([(RETIRE, "stub-slow", extra.id)] if retired else [])

    def test_the_cool_down_counts_from_ready_not_from_boot(self):
        extra = PoolDevice(
            "d1", "stub-slow", "idle", False, NOW - timedelta(minutes=30), NOW, "running", "healthy"
        )
        assert run([extra], {}, cool_down_s=1) == []

    def test_only_cooled_extras_go_and_no_more_than_the_excess(self):
        old, mid, new = dev(1, age=timedelta(minutes=30)), dev(2, age=timedelta(minutes=10)), dev(3)
        assert run([new, mid, old], {"stub-slow": 1}, cool_down_s=600) == [
            (RETIRE, "stub-slow", old.id),
            (RETIRE, "stub-slow", mid.id),
        ]
        assert run([new, mid, old], {"stub-slow": 2}, cool_down_s=900) == [(RETIRE, "stub-slow", old.id)]

    def test_a_boot_under_way_is_never_retired_as_an_extra(self):
        assert run([dev(1, state="booting", age=timedelta(seconds=3))], {}) == []

    def test_capacity_bounds_the_boots(self):
        held = [dev(i, held=True, state="claimed") for i in range(3)]
        assert run(held, {"stub-slow": 3}, capacity=4) == [(BOOT, "stub-slow", None)]

    def test_a_held_device_is_never_touched_whatever_its_health(self):
        assert run([dev(1, held=True, state="claimed", health="unhealthy")], {}) == []


def per_host(devices, wanted, hosts, capacity: int = 20):
    return sorted(
        (a.kind, a.host, a.profile, a.device_id)
        for a in plan_pool(PoolObserved(NOW, devices, tuple(hosts)), wanted, PROFILES, capacity)
    )


class TestPerHost:
    def test_the_target_applies_to_each_active_host(self):
        assert per_host([dev(1, host="a")], {"stub-slow": 2}, ["a", "b"]) == [
            (BOOT, "a", "stub-slow", None),
            (BOOT, "b", "stub-slow", None),
            (BOOT, "b", "stub-slow", None),
        ]

    def test_a_host_that_is_not_active_gets_no_refill_and_its_idle_devices_go(self):
        devices = [dev(1, host="a"), dev(2, host="b"), dev(3, host="b", state="claimed", held=True)]
        actions = plan_pool(PoolObserved(NOW, devices, ("a",)), {"stub-slow": 1}, PROFILES, 20)
        assert [(a.kind, a.device_id) for a in actions] == [(RETIRE, devices[1].id)]
        assert actions[0].reason == "its host b is not active"

    def test_a_boot_under_way_on_a_draining_host_is_let_finish(self):
        booting = dev(1, host="b", state="booting", age=timedelta(seconds=3))
        assert per_host([booting], {"stub-slow": 1}, ["a"]) == [(BOOT, "a", "stub-slow", None)]

    def test_capacity_is_per_host(self):
        full = [dev(i, host="a", held=True, state="claimed") for i in range(2)]
        assert per_host(full, {"stub-slow": 1}, ["a", "b"], capacity=2) == [(BOOT, "b", "stub-slow", None)]

    def test_extras_are_counted_per_host(self):
        devices = [dev(1, host="a"), dev(2, host="a", age=timedelta(minutes=9)), dev(3, host="b")]
        assert per_host(devices, {"stub-slow": 1}, ["a", "b"]) == [(RETIRE, None, "stub-slow", devices[1].id)]
