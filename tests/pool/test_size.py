"""pool_target(...) as tables: demand during one boot plus headroom, within the bounds; no I/O."""

from __future__ import annotations

import pytest

from provisioner.pool import Demand, Sizing, pool_target, pool_targets
from provisioner.pool.size import most_within
from provisioner.runtime.profiles import builtin_profiles

PROFILES = builtin_profiles()
SLOW = PROFILES["stub-slow"]  # boot_timeout_s 120
SIZING = Sizing(window_s=600, headroom=0.5)


def target(
    demand: Demand | None, low: int = 1, high: int = 10, hosts: int = 1, sizing: Sizing = SIZING
) -> int:
    return pool_target(SLOW, low, high, demand, sizing, hosts).wanted


class TestTarget:
    @pytest.mark.parametrize(
        ("claims", "boot_s", "wanted"),
        [
            (0, 45.0, 1),  # no demand: the minimum
            (1, 45.0, 1),  # 0.11 -> 1
            (20, 60.0, 3),  # 20/600 x 60 x 1.5 = 3.00 exactly: not 4
            (21, 60.0, 4),  # 3.15 -> 4
            (40, 45.0, 5),  # 4.5 -> 5
            (80, 50.0, 10),  # 10.0: the maximum exactly
            (81, 50.0, 10),  # 10.125: held at the maximum
            (1000, 45.0, 10),
        ],
    )
    def test_claims_during_one_boot_plus_headroom(self, claims, boot_s, wanted):
        assert target(Demand(claims, boot_s)) == wanted

    def test_more_claims_never_lower_the_target(self):
        wanted = [target(Demand(n, 45.0)) for n in range(0, 200)]
        assert wanted == sorted(wanted) and wanted[0] == 1 and wanted[-1] == 10

    def test_without_a_recorded_boot_the_boot_timeout_stands_in(self):
        assert target(Demand(10, None)) == 3  # 10/600 x 120 x 1.5 = 3.0
        assert target(Demand(10, 120.0)) == target(Demand(10, None))

    def test_no_demand_observed_keeps_the_minimum(self):
        assert target(None, low=2) == 2
        assert target(None, low=0) == 0

    def test_headroom_zero_keeps_exactly_the_expected_claims(self):
        assert target(Demand(20, 60.0), low=0, sizing=Sizing(600, 0.0)) == 2
        assert target(Demand(21, 60.0), low=0, sizing=Sizing(600, 0.0)) == 3

    def test_float_noise_never_adds_a_device(self):
        """8/300 x 90 x 1.25 is 3.0000000000000004 in floating point: still 3."""
        assert target(Demand(8, 90.0), sizing=Sizing(300, 0.25)) == 3

    def test_a_shorter_window_reads_the_same_claims_as_a_higher_rate(self):
        assert target(Demand(10, 60.0), sizing=Sizing(300, 0.5)) == 3
        assert target(Demand(10, 60.0), sizing=Sizing(600, 0.5)) == 2

    @pytest.mark.parametrize(("hosts", "wanted"), [(1, 5), (2, 3), (3, 2), (5, 1)])
    def test_the_demand_is_shared_by_the_active_hosts(self, hosts, wanted):
        assert target(Demand(40, 45.0), hosts=hosts) == wanted  # 4.5 over the hosts

    def test_fixed_pool_when_max_is_min(self):
        assert target(Demand(1000, 45.0), low=2, high=2) == 2

    def test_the_reason_says_how_and_which_bound_held(self):
        assert pool_target(SLOW, 1, 10, Demand(1000, 45.0), SIZING, 1).reason.endswith(
            "-> 10 (max), bounds [1, 10]"
        )
        assert pool_target(SLOW, 2, 10, None, SIZING, 1).reason == (
            "0 claims in 600 s x p90 boot 120.0 s x 1.5 = 0.00, burst 0 within one boot;"
            " over 1 host(s) -> 2 (min), bounds [2, 10]"
        )


def at_once(n: int, ago_s: float, spread_s: float = 0.5) -> tuple[float, ...]:
    """n claims ``ago_s`` before now, ``spread_s`` apart."""
    return tuple(ago_s + i * spread_s for i in range(n))


class TestBurst:
    @pytest.mark.parametrize(
        ("ages", "span", "most"),
        [
            ((), 45.0, 0),
            ((10.0,), 45.0, 1),
            ((0.0, 45.0), 45.0, 2),  # exactly one boot apart: within it
            ((0.0, 45.01), 45.0, 1),
            ((500.0, 5.0, 400.0, 6.0, 7.0), 45.0, 3),  # unordered
            (at_once(10, 300.0) + at_once(3, 10.0), 45.0, 10),
        ],
    )
    def test_most_claims_within_one_span(self, ages, span, most):
        assert most_within(ages, span) == most

    def test_ten_at_once_keep_ten_although_the_rate_asks_for_two(self):
        """20 claims in the window: ten at once 5 min ago, then one every 30 s."""
        ages = at_once(10, 300.0) + tuple(range(0, 300, 30))
        assert target(Demand(20, 45.0)) == 3  # 20/600 x 45 x 1.5 = 2.25: the rate alone
        assert target(Demand(20, 45.0, ages)) == 10

    def test_a_burst_spread_over_more_than_one_boot_counts_as_a_rate(self):
        """Ten claims 60 s apart are never more than one within a 45 s boot."""
        ages = tuple(float(i * 60) for i in range(10))
        assert target(Demand(10, 45.0, ages)) == 2  # 10/600 x 45 x 1.5 = 1.125

    def test_the_burst_is_measured_in_the_profiles_boot_time(self):
        ages = tuple(float(i * 20) for i in range(6))  # 6 claims 20 s apart
        assert target(Demand(6, 45.0, ages)) == 3  # 3 within any 45 s
        assert target(Demand(6, None, ages)) == 6  # 120 s boot timeout: all 6

    def test_a_burst_is_held_within_the_bounds_and_shared_by_hosts(self):
        ages = at_once(12, 60.0)
        assert target(Demand(12, 45.0, ages)) == 10  # the maximum
        assert target(Demand(12, 45.0, ages), hosts=3) == 4  # 12 over 3 hosts
        reason = pool_target(SLOW, 1, 10, Demand(12, 45.0, ages), SIZING, 1).reason
        assert "burst 12 within one boot" in reason and reason.endswith("-> 10 (max), bounds [1, 10]")


def test_targets_only_for_kept_profiles():
    found = pool_targets(
        PROFILES, {"stub-slow": (1, 4), "gone": (1, 1)}, {"stub": Demand(50, 1.0)}, SIZING, 1
    )
    assert {name: t.wanted for name, t in found.items()} == {"stub-slow": 1}
