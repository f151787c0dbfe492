"""pool_target(...) as tables: demand during one boot plus headroom, within the bounds; no I/O."""

from __future__ import annotations

import pytest

from provisioner.pool import Demand, Sizing, pool_target, pool_targets
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
            "0 claims in 600 s x p90 boot 120.0 s x 1.5 = 0.00 over 1 host(s) -> 2 (min), bounds [2, 10]"
        )


def test_targets_only_for_kept_profiles():
    found = pool_targets(
        PROFILES, {"stub-slow": (1, 4), "gone": (1, 1)}, {"stub": Demand(50, 1.0)}, SIZING, 1
    )
    assert {name: t.wanted for name, t in found.items()} == {"stub-slow": 1}
