"""Codes tests: real PostgreSQL and the provider simulator over HTTP; no Docker or Prefect needed."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from provisioner.steps.deps import Deps
from provisioner.watcher.loop import ProviderWatcher
from tests.plugins.prefect_env import provisioner_environment

WEBHOOK_SECRET = "hook-secret-8c1f4e2a"
GATEWAY_TOKEN = "gw-token-codes-91d2"
WATCHER_ENV = {
    "PROVISIONER_CODES__POLL_INTERVAL_S": "0.5",
    "PROVISIONER_CODES__HEARTBEAT_S": "0.3",
    "PROVISIONER_CODES__STANDBY_RETRY_S": "0.2",
    "PROVISIONER_CODES__REQUESTS_PER_S": "50",
    "PROVISIONER_CODES__BURST": "10",
}


@pytest.fixture
def codes_env(monkeypatch, database_url, db_sessions, sim) -> Iterator[Deps]:
    """Settings aimed at the test database and the simulator; yields the process's Deps."""
    from provisioner.settings import get_settings
    from provisioner.steps.deps import get_deps, reset_deps

    for key, value in provisioner_environment(
        instance_id="codes-test", sim_urls=sim.base_urls, database_url=database_url
    ).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PROVISIONER_CODES__STALE_AFTER_S", "3")
    monkeypatch.setenv("PROVISIONER_CODES__WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("PROVISIONER_GATEWAY__TOKEN", GATEWAY_TOKEN)
    for key, value in WATCHER_ENV.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    reset_deps()
    try:
        yield get_deps()
    finally:
        reset_deps()
        monkeypatch.undo()
        get_settings.cache_clear()


def rent(deps: Deps, provider: str = "sms_activate") -> tuple[str, int, str]:
    """A session with one bought number waiting for its code: (session id, lease id, activation id)."""
    from provisioner.steps.numbers import rent_number
    from provisioner.store import repository as repo

    with deps.sessions.begin() as db:
        sid = repo.create_session(db, service="telegram", country="RU", actor="test").id
    rented = rent_number(
        deps,
        sid,
        providers=[provider],
        service="telegram",
        country="RU",
        max_price=None,
        attempt=1,
        actor="test",
    )
    return sid, rented.lease_id, rented.activation_id


@contextlib.contextmanager
def running_watcher(deps: Deps, provider: str, *, name: str = "test-watcher") -> Iterator[ProviderWatcher]:
    """A code watcher for ``provider`` in a thread of this process, holding its lock."""
    stop = threading.Event()
    watcher = ProviderWatcher(deps, provider, stop, name=name)
    thread = threading.Thread(target=watcher.run, name=f"test-{name}", daemon=True)
    thread.start()
    try:
        assert watcher.holding.wait(10), f"{name} did not get the lock of {provider}"
        yield watcher
    finally:
        stop.set()
        thread.join(timeout=10)
