"""plan_pool(observed) -> actions: which devices to boot and which to retire, no I/O.

Per host and profile it keeps `wanted` idle, ready devices (the target applies to each active
host: two active hosts and warm 2 keep four): devices still booting for the pool count toward it
(no double boot), idle devices past the profile's max age are retired and replaced, extras beyond
`wanted` are retired (oldest first) once idle for the cool-down (a target that drops with demand
scales in slowly), and no boot starts beyond the host's capacity (`capacity`
live devices per host). A device that is down (container missing, stopped, paused, restarting or
unhealthy) is left to reconciliation's device-down rule (reconciler.down), the same for pool and
session devices: it retires an idle device down past the grace, and the next pass refills. A pool boot whose
booter died (booting past the profile's boot timeout) is retired too. A host that is not active
(draining, down) gets no refills, and its idle pool devices are retired (nothing claims them).
With one Docker engine, `hosts` is that engine alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from provisioner.runtime.placement import LOCAL
from provisioner.runtime.profiles import DeviceProfile


class PoolKind(enum.StrEnum):
    BOOT = "boot"
    RETIRE = "retire"


@dataclass(frozen=True)
class PoolDevice:
    id: str
    profile: str
    state: str  # booting | idle | claimed
    held: bool  # a session holds it (claimed, or cold-booting for a session)
    created_at: datetime
    ready_at: datetime | None
    container_state: str | None  # the device container: running, exited, ...; None when missing (shown)
    health: str | None  # its Docker health: healthy, unhealthy, starting, None (shown)
    host: str = LOCAL


@dataclass(frozen=True)
class PoolObserved:
    now: datetime
    devices: list[PoolDevice]  # every non-terminal device (of every host)
    hosts: tuple[str, ...] = (LOCAL,)  # the hosts that get refills: the active ones


@dataclass(frozen=True)
class PoolAction:
    kind: PoolKind
    profile: str
    reason: str
    device_id: str | None = None
    host: str | None = None  # a boot: the host it is placed on

    @property
    def target(self) -> str:
        return self.device_id or f"new {self.profile} device on {self.host}"


def _unusable(device: PoolDevice, profile: DeviceProfile | None, now: datetime) -> str | None:
    """Why an unheld pool device must go, or None while it is (or may still become) usable."""
    if profile is None:
        return "its profile is no longer configured"
    age = now - device.created_at
    if device.state == "booting":
        if age > timedelta(seconds=profile.boot_timeout_s) * 2:
            return f"still booting after {age.total_seconds():.0f} s: its booter died"
        return None
    if profile.max_age_s is not None and age >= timedelta(seconds=profile.max_age_s):
        return f"older than its max age ({profile.max_age_s:g} s)"
    return None


def _idle_for(device: PoolDevice, now: datetime) -> timedelta:
    return now - (device.ready_at or device.created_at)


def plan_pool(
    observed: PoolObserved,
    wanted: dict[str, int],
    profiles: dict[str, DeviceProfile],
    capacity: int,
    cool_down_s: float = 0.0,
) -> list[PoolAction]:
    actions: list[PoolAction] = []
    kept: dict[tuple[str, str], list[PoolDevice]] = {}
    in_use: dict[str, int] = {}
    active = set(observed.hosts)
    for device in observed.devices:
        in_use[device.host] = in_use.get(device.host, 0) + 1
        if device.held:
            continue  # a session's device: reconciliation watches it
        why = _unusable(device, profiles.get(device.profile), observed.now)
        if why is None and device.host not in active and device.state == "idle":
            why = f"its host {device.host} is not active"
        if why:
            actions.append(PoolAction(PoolKind.RETIRE, device.profile, why, device.id))
            in_use[device.host] -= 1
        else:
            kept.setdefault((device.host, device.profile), []).append(device)
    pairs = set(kept) | {(host, profile) for host in active for profile in wanted}
    for host, profile in sorted(pairs):
        devices = sorted(kept.get((host, profile), []), key=lambda d: (d.created_at, d.id))
        want = wanted.get(profile, 0) if host in active else 0
        # A boot under way is let finish; an idle device goes only once idle for the cool-down.
        cooled = [
            d
            for d in devices
            if d.state == "idle" and _idle_for(d, observed.now) >= timedelta(seconds=cool_down_s)
        ]
        for extra in cooled[: max(0, len(devices) - want)]:  # oldest go first
            reason = (
                f"more than the {want} wanted, idle {_idle_for(extra, observed.now).total_seconds():.0f} s"
            )
            actions.append(PoolAction(PoolKind.RETIRE, profile, reason, extra.id))
            in_use[host] -= 1
        for _ in range(max(0, want - len(devices))):
            if in_use.get(host, 0) >= capacity:
                break
            actions.append(
                PoolAction(PoolKind.BOOT, profile, f"{len(devices)} of {want} idle or booting", host=host)
            )
            in_use[host] = in_use.get(host, 0) + 1
    return actions
