"""What the codes tests share: the watcher's fast settings, the secrets the fixture sets, a code
watcher running in a thread of the test process, and settings whose polls are far apart."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from provisioner.steps.deps import Deps
from provisioner.watcher.loop import ProviderWatcher

WEBHOOK_SECRET = "hook-secret-8c1f4e2a"
GATEWAY_TOKEN = "gw-token-codes-91d2"
WATCHER_ENV = {
    "PROVISIONER_CODES__POLL_INTERVAL_S": "0.5",
    "PROVISIONER_CODES__HEARTBEAT_S": "0.3",
    "PROVISIONER_CODES__STANDBY_RETRY_S": "0.2",
    "PROVISIONER_CODES__REQUESTS_PER_S": "50",
    "PROVISIONER_CODES__BURST": "10",
}


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


def polls_far_apart(monkeypatch):
    """The process's Deps with the wait's re-reads 2 s or more apart: only a NOTIFY wakes it sooner."""
    return polls_at(monkeypatch, initial_s=2, max_s=30)


def polls_at(monkeypatch, *, initial_s: float, max_s: float):
    """The process's Deps with the flow's own code polls at these settings."""
    from provisioner.settings import get_settings
    from provisioner.steps.deps import get_deps, reset_deps

    monkeypatch.setenv("PROVISIONER_DEFAULTS__POLL_INITIAL_S", str(initial_s))
    monkeypatch.setenv("PROVISIONER_DEFAULTS__POLL_MAX_S", str(max_s))
    get_settings.cache_clear()
    reset_deps()
    return get_deps()
