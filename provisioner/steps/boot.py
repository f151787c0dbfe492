"""Booting a device: recorded and placed, then started here or on its host's work queue.

A session gets its device first (claimed from the warm pool, else cold-booted for it:
``boot_session_device``) and only then rents a number, so the number's clock starts when the
screen is usable.
"""

from __future__ import annotations

from provisioner.steps.deps import Deps
from provisioner.steps.devices import (
    Device,
    LaunchSlot,
    device_of,
    mark_session_ready,
    record_device,
    retire_device,
    start_device,
)
from provisioner.steps.launch import launch_on_queue, launches_on_queues
from provisioner.store import DeviceState, State
from provisioner.store import devices as devrepo
from provisioner.store import repository as repo


def boot_device(
    deps: Deps,
    profile: str,
    *,
    session_id: str | None = None,
    reason: str = "",
    host: str | None = None,
    slot: LaunchSlot | None = None,
) -> Device:
    """Record a device (placed on a host), start it (``start_device``) here or, from a deployment's
    flow run over several hosts, as a launch-device run on its host's work queue
    (steps.launch), and return it ready: idle (a pool device) or claimed (cold-booted for
    ``session_id``). On any failure its containers are removed and it ends failed; the error is
    raised."""
    device_id, placed = record_device(deps, profile, session_id=session_id, host=host)
    if not launches_on_queues(deps):
        return start_device(deps, device_id, slot=slot, reason=reason)
    launch_on_queue(deps, device_id, host=placed, profile=profile, reason=reason)
    with deps.sessions() as db:
        row = devrepo.get_device(db, device_id)
    return device_of(row, claimed=False)


def boot_session_device(
    deps: Deps, session_id: str, *, profile: str, actor: str, slot: LaunchSlot | None = None
) -> Device:
    """Cold-boot a device for a session no idle device could serve (session launching meanwhile),
    holding ``slot(host)`` while it launches here (see boot_device)."""
    stale = None
    with deps.sessions.begin() as db:
        repo.get_session(db, session_id, for_update=True)  # serialized with a concurrent claim
        session = repo.ensure_not_ended(db, session_id)
        held = devrepo.session_device(db, session_id)
        device = (
            device_of(held, claimed=False) if held is not None and held.state == DeviceState.CLAIMED else None
        )
        if device is None and held is not None:  # an earlier try's boot that never finished
            stale = held.id
            devrepo.unbind_session_device(db, session_id)
        if device is None and State(session.state) == State.REQUESTED:
            repo.transition(
                db, session_id, State.LAUNCHING, reason=f"cold-booting a {profile} device", actor=actor
            )
    if stale is not None:
        retire_device(deps, stale, reason="its boot was interrupted", failed=True)
    if device is None:
        device = boot_device(
            deps, profile, session_id=session_id, reason=f"cold-booted for session {session_id}", slot=slot
        )
    mark_session_ready(deps, session_id, device, reason=f"device {device.id} booted", actor=actor)
    return device
