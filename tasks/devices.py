"""Getting a session its device (claim an idle one, else cold-boot one under its host's launch
limit), undone by retiring it; starting a recorded device on this worker's host (launch-device)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.transactions import Transaction, get_transaction

from provisioner.steps.boot import boot_session_device
from provisioner.steps.deps import get_deps
from provisioner.steps.devices import Device, claim_device, retire_session_device
from provisioner.steps.launch import launch_slot_for, start_on_this_host
from tasks.retry import RETRY_POLICY


@task(name="claim-device", cache_policy=NONE, **RETRY_POLICY)
def claim_session_device(session_id: str, *, profile: str, actor: str) -> Device | None:
    """The session's device if the gateway claimed one, else an idle pool device; None: boot one."""
    if txn := get_transaction():
        txn.set("session_id", session_id)
    device = claim_device(get_deps(), session_id, profile=profile, actor=actor)
    logger = get_run_logger()
    if device is None:
        logger.info("no idle %s device: cold-booting one", profile)
    else:
        logger.info("device %s claimed; stream %s", device.id, device.stream_url or "via the gateway")
    return device


@task(name="boot-device", cache_policy=NONE, **RETRY_POLICY)
def boot_device_for_session(session_id: str, *, profile: str, actor: str) -> Device:
    if txn := get_transaction():
        txn.set("session_id", session_id)
    deps, logger = get_deps(), get_run_logger()
    device = boot_session_device(
        deps, session_id, profile=profile, actor=actor, slot=launch_slot_for(deps, logger)
    )
    logger.info("device %s (%s) booted for session %s", device.id, profile, session_id)
    return device


@claim_session_device.on_rollback
@boot_device_for_session.on_rollback
def _retire_session_device(txn: Transaction) -> None:
    session_id = txn.get("session_id", None)
    if session_id:
        retire_session_device(get_deps(), session_id, reason="provision rolled back")


@task(name="start-device", cache_policy=NONE)
def start_device_here(device_id: str, *, reason: str) -> Device:
    """Start a recorded device on this worker's own engine (it must be its host's), under the
    host's launch limit. Not retried: a failed start has retired the device."""
    deps, logger = get_deps(), get_run_logger()
    device = start_on_this_host(deps, device_id, slot=launch_slot_for(deps, logger), reason=reason)
    logger.info("device %s (%s) ready, stream %s", device.id, device.profile, device.stream_url or "-")
    return device
