"""pool_targets(...) -> idle devices to keep per host and profile, sized by demand; no I/O.

A profile's target is the claims expected during one boot, plus headroom, or the largest burst
seen within one boot time, whichever is more, within its bounds:

    expected = claims in the window / window * p90 boot time * (1 + headroom)
    burst    = the most claims within any one p90 boot time in the window
    target   = ceil(max(expected, burst) / active hosts), clamped to [warm, warm_max] per host

The rate alone sizes for the average: ten sessions asked at once every few minutes are 2-4 a
minute on average, and all but a few of them would wait for a cold boot. A burst seen in the window
is expected again until it leaves the window (then the cool-down retires the extras).

`warm` is the minimum (PROVISIONER_POOL__WARM overrides the profiles'); `warm_max` the maximum
(PROVISIONER_POOL__MAX overrides; unset: warm, a fixed pool). The boot time is the p90 of the
profile's recent boots; with none recorded yet, the profile's boot_timeout_s stands in (a boot
takes at most that). Devices claimed are counted whether claimed warm or cold-booted for a
session: both are demand. Per-host capacity bounds the boots in plan_pool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from provisioner.runtime.profiles import DeviceProfile


@dataclass(frozen=True)
class Demand:
    claims: int  # devices of the profile claimed within the window (any host)
    boot_p90_s: float | None  # p90 of its recent boots; None: none recorded
    claim_ages_s: tuple[float, ...] = ()  # when each of those claims was, in seconds before now


@dataclass(frozen=True)
class Sizing:
    window_s: float  # the window claims are counted over
    headroom: float  # extra over the expected claims, as a fraction (0.5: half as many again)


@dataclass(frozen=True)
class Target:
    wanted: int  # idle devices to keep on each active host
    reason: str


def bounds(
    profiles: dict[str, DeviceProfile], warm: dict[str, int] | None, most: dict[str, int] | None
) -> dict[str, tuple[int, int]]:
    """(min, max) idle devices per host for each profile the pool keeps: min from
    PROVISIONER_POOL__WARM when set, else the profile's warm; max from PROVISIONER_POOL__MAX when
    set, else the profile's warm_max; never below min. Profiles with max 0 are left out."""
    found = {}
    for name, profile in profiles.items():
        low = (warm or {}).get(name, 0) if warm is not None else profile.warm
        high = (most or {}).get(name, 0) if most is not None else (profile.warm_max or 0)
        high = max(low, high)
        if high > 0:
            found[name] = (low, high)
    return found


def most_within(ages_s: tuple[float, ...], span_s: float) -> int:
    """The most of ``ages_s`` (seconds before now) that fall within any one ``span_s``."""
    times = sorted(ages_s)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > span_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def pool_target(
    profile: DeviceProfile, low: int, high: int, demand: Demand | None, sizing: Sizing, hosts: int
) -> Target:
    """One profile's idle devices per active host: demand during one boot plus headroom, or the
    largest burst within one boot time, in [low, high]."""
    claims = demand.claims if demand else 0
    boot_s = demand.boot_p90_s if demand and demand.boot_p90_s is not None else profile.boot_timeout_s
    expected = claims / sizing.window_s * boot_s * (1 + sizing.headroom)
    burst = most_within(demand.claim_ages_s, boot_s) if demand else 0
    # Rounding noise (0.1 + 0.2) must not add a device: round to 1e-9 before the ceiling.
    per_host = math.ceil(round(max(expected, burst) / max(hosts, 1), 9))
    wanted = min(high, max(low, per_host))
    bound = " (min)" if wanted == low and per_host < low else " (max)" if wanted == high < per_host else ""
    reason = (
        f"{claims} claims in {sizing.window_s:g} s x p90 boot {boot_s:.1f} s x {1 + sizing.headroom:g}"
        f" = {expected:.2f}, burst {burst} within one boot; over {hosts} host(s) -> {wanted}{bound},"
        f" bounds [{low}, {high}]"
    )
    return Target(wanted, reason)


def pool_targets(
    profiles: dict[str, DeviceProfile],
    limits: dict[str, tuple[int, int]],
    demand: dict[str, Demand],
    sizing: Sizing,
    hosts: int,
) -> dict[str, Target]:
    """Every kept profile's target (profiles from `bounds`)."""
    return {
        name: pool_target(profiles[name], low, high, demand.get(name), sizing, hosts)
        for name, (low, high) in limits.items()
        if name in profiles
    }
