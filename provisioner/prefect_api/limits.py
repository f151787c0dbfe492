"""Prefect global concurrency limits: created or resized once per process, a slot held."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL


@functools.cache
def _ensure(name: str, slots: int, api_url: str | None) -> None:
    """Once per process and Prefect API. Not atomic in Prefect: a concurrent creator may win."""
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, slots)


def ensure_limit(name: str, slots: int) -> None:
    """Create or resize the global concurrency limit ``name`` (once per process and API)."""
    _ensure(name, slots, PREFECT_API_URL.value())


@contextlib.contextmanager
def hold_slot(name: str, *, lease_s: int) -> Iterator[None]:
    """Hold one slot of limit ``name`` (waiting for one), on a lease renewed while held, so a
    killed holder's slot goes back within ``lease_s`` plus a pass of the lease repossessor."""
    with concurrency(name, occupy=1, lease_duration=lease_s):
        yield
