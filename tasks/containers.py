"""The launch task: gated by the host's global concurrency limit, undone by removing the containers."""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.transactions import Transaction, get_transaction

from provisioning.containers import LaunchedSession, launch_containers
from provisioning.deps import get_deps
from provisioning.lifecycle import remove_containers
from tasks.retry import RETRY_POLICY


def launch_limit_name() -> str:
    return f"provisioner-launch-{get_deps().settings.instance_id}"


def ensure_launch_limit() -> str:
    """Create or resize the global concurrency limit that gates launches on this Docker host."""
    name = launch_limit_name()
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, get_deps().settings.docker.launch_slots)
    return name


@task(name="launch-containers", cache_policy=NONE, **RETRY_POLICY)
def launch_session_containers(session_id: str, *, profile: str, actor: str) -> LaunchedSession:
    logger = get_run_logger()
    if txn := get_transaction():
        txn.set("session_id", session_id)
    limit = launch_limit_name()
    logger.info("waiting for a launch slot on %s (%d slots)", limit, get_deps().settings.docker.launch_slots)
    started = time.monotonic()
    with concurrency(limit, occupy=1, lease_duration=600):
        logger.info("got a launch slot after %.1f s", time.monotonic() - started)
        launched = launch_containers(get_deps(), session_id, profile=profile, actor=actor)
    logger.info("device %s and stream %s ready: %s", launched.device, launched.stream, launched.stream_url)
    return launched


@launch_session_containers.on_rollback
def _remove_session_containers(txn: Transaction) -> None:
    session_id = txn.get("session_id", None)
    if session_id:
        remove_containers(get_deps(), session_id)
