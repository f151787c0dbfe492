"""Small helpers shared by the flow and reconcile tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from store import repository as repo

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll until ``predicate`` returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:g} s")


def session(deps, session_id: str):
    with deps.sessions() as db:
        return repo.get_session(db, session_id)
