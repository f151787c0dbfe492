"""Getting a session its device (claim an idle one, else cold-boot one), undone by retiring it, and
the host's launch concurrency limit that gates cold boots."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL
from prefect.transactions import Transaction, get_transaction

from provisioning.deps import get_deps
from provisioning.devices import Device, boot_session_device, claim_device, retire_session_device
from tasks.retry import RETRY_POLICY

LAUNCH_LEASE_S = 60  # the shortest lease Prefect's API accepts


def launch_limit_name() -> str:
    return f"provisioner-launch-{get_deps().settings.instance_id}"


@functools.cache
def _ensure_limit(name: str, slots: int, api_url: str | None) -> None:
    """Once per process and Prefect API. Not atomic in Prefect: a concurrent creator may win."""
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, slots)


def ensure_launch_limit() -> str:
    """Create or resize the global concurrency limit that gates launches on this Docker host."""
    name = launch_limit_name()
    _ensure_limit(name, get_deps().settings.docker.launch_slots, PREFECT_API_URL.value())
    return name


@contextlib.contextmanager
def launch_slot(logger) -> Iterator[None]:
    """Hold one slot of the host's launch limit; a burst of provisions queues here, and says so."""
    name = ensure_launch_limit()
    logger.info("waiting for a launch slot on %s (%d slots)", name, get_deps().settings.docker.launch_slots)
    started = time.monotonic()
    # A short lease, renewed by Prefect every 45 s while the launch runs: a killed holder's slot
    # goes back within LAUNCH_LEASE_S plus one pass of the server's lease repossessor (15 s).
    with concurrency(name, occupy=1, lease_duration=LAUNCH_LEASE_S):
        logger.info("got a launch slot after %.1f s", time.monotonic() - started)
        yield


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
    device = boot_session_device(get_deps(), session_id, profile=profile, actor=actor)
    get_run_logger().info("device %s (%s) booted for session %s", device.id, profile, session_id)
    return device


@claim_session_device.on_rollback
@boot_device_for_session.on_rollback
def _retire_session_device(txn: Transaction) -> None:
    session_id = txn.get("session_id", None)
    if session_id:
        retire_session_device(get_deps(), session_id, reason="provision rolled back")
