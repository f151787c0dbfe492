"""The device-down rule, one for every device (held by a live session or idle in the pool), pure.

A device is *down* when its device container is missing or not running (exited, paused,
restarting, created, dead) or runs but its Docker HEALTHCHECK says unhealthy. The first pass that
sees it down only records when and as what (devices.down_since, devices.down_condition); a device
still down (in whatever condition) when the grace has passed since then is gone: its session is
orphaned, or an idle device is retired (the pool boots its replacement). A device seen up again
has its record cleared. The grace is PROVISIONER_RECONCILE__UNHEALTHY_GRACE_S for a device
unhealthy since it was first seen down (running but hung: Docker's own retries have already
passed) and PROVISIONER_RECONCILE__DEVICE_GRACE_S otherwise (a paused or restarting device comes
back unhealthy until its next health probe passes: it gets the longer grace).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from provisioner.reconciler.model import Action, ContainerView, DeviceView, Kind, Reason

UNHEALTHY = "unhealthy"


def device_condition(container: ContainerView | None) -> str | None:
    """What makes a device down (missing, exited, paused, restarting, ..., unhealthy), None: up."""
    if container is None:
        return "missing"
    if container.state != "running":
        return container.state
    if container.health == UNHEALTHY:
        return UNHEALTHY
    return None


@dataclass(frozen=True)
class DownVerdict:
    record: Action | None  # MARK_DEVICE_DOWN (first sighting) or CLEAR_DEVICE_DOWN (up again)
    condition: str | None  # what is wrong now; None: the device is up
    gone: str | None  # down past its grace: why it is gone (the orphan's or retirement's reason)


def device_down(
    row: DeviceView,
    container: ContainerView | None,
    now: datetime,
    *,
    device_grace: timedelta,
    unhealthy_grace: timedelta,
    session_id: str | None = None,
) -> DownVerdict:
    """The rule for one device, given its recorded down state and its device container now."""
    condition = device_condition(container)
    if condition is None:
        if row.down_since is None:
            return DownVerdict(None, None, None)
        clear = Action(
            Kind.CLEAR_DEVICE_DOWN, Reason.DEVICE_RECOVERED, session_id=session_id, device_id=row.id
        )
        return DownVerdict(clear, None, None)
    if row.down_since is None:  # first sight: remember when and as what, act on a later pass
        mark = Action(
            Kind.MARK_DEVICE_DOWN,
            f"device {condition}",
            session_id=session_id,
            device_id=row.id,
            detail={"condition": condition},
        )
        return DownVerdict(mark, condition, None)
    down_for = now - row.down_since
    # The shorter grace only for a device down as unhealthy from the first sighting on (running
    # but hung): a device paused or restarting comes back unhealthy until its next health probe.
    hung = condition == UNHEALTHY and row.down_condition == UNHEALTHY
    if down_for < (unhealthy_grace if hung else device_grace):
        return DownVerdict(None, condition, None)
    first = "" if condition == row.down_condition else f", first seen {row.down_condition}"
    return DownVerdict(None, condition, f"device {condition} for {down_for.total_seconds():.0f} s{first}")
