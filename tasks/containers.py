"""The launch task, undone by removing the containers, and the host's launch concurrency limit."""

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

from provisioning.containers import LaunchedSession, launch_containers
from provisioning.deps import get_deps
from provisioning.lifecycle import remove_containers
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


@task(name="launch-containers", cache_policy=NONE, **RETRY_POLICY)
def launch_session_containers(session_id: str, *, profile: str, actor: str) -> LaunchedSession:
    if txn := get_transaction():
        txn.set("session_id", session_id)
    launched = launch_containers(get_deps(), session_id, profile=profile, actor=actor)
    get_run_logger().info(
        "device %s and stream %s ready: %s", launched.device, launched.stream, launched.stream_url
    )
    return launched


@launch_session_containers.on_rollback
def _remove_session_containers(txn: Transaction) -> None:
    session_id = txn.get("session_id", None)
    if session_id:
        remove_containers(get_deps(), session_id)
