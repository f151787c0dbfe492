"""The code watcher (`provisioner watch`): one loop per configured provider account.

It writes each code into its lease once (steps.codes) and NOTIFYs the waiting flow; see
watcher.loop for the lock, heartbeat and polling, watcher.budget for the request budget.
"""

from __future__ import annotations

import logging
import threading

from providers.errors import api_key_var
from provisioner.steps.deps import Deps
from provisioner.watcher.loop import ProviderWatcher

log = logging.getLogger(__name__)


def start_watchers(deps: Deps, providers: list[str], stop: threading.Event) -> list[ProviderWatcher]:
    """One watcher thread per provider; they run until ``stop`` is set."""
    watchers = [ProviderWatcher(deps, name, stop) for name in providers]
    for watcher in watchers:
        watcher.thread = threading.Thread(
            target=watcher.run, name=f"code-watcher-{watcher.provider}", daemon=True
        )
        watcher.thread.start()
    return watchers


def idle_without_providers(providers: list[str], stop: threading.Event) -> None:
    """No provider account is configured: say once which settings are missing, then stay up
    (healthy, doing nothing) until ``stop`` is set. A long-running service (compose's `watcher`)
    started before anyone set a key neither fails nor restarts in a loop; flows poll for their own
    codes while no watcher beats. The settings are read at start: set a key and restart it."""
    names = " or ".join(api_key_var(name) for name in providers)
    log.warning("no SMS provider is configured (set %s); the code watcher idles until stopped", names)
    stop.wait()


def watch(deps: Deps, providers: list[str], stop: threading.Event) -> None:
    """Watch ``providers`` until ``stop`` is set (the CLI sets it on SIGTERM or Ctrl-C)."""
    watchers = start_watchers(deps, providers, stop)
    log.info("code watcher for %s", ", ".join(w.provider for w in watchers))
    stop.wait()
    for watcher in watchers:  # let each remove its heartbeat, so flows poll for themselves at once
        watcher.thread.join(timeout=10)


__all__ = ["ProviderWatcher", "idle_without_providers", "start_watchers", "watch"]
