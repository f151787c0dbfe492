"""Codes tests: real PostgreSQL and the provider simulator over HTTP; no Docker or Prefect needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provisioner.steps.deps import Deps
from tests.codes.support import GATEWAY_TOKEN, WATCHER_ENV, WEBHOOK_SECRET
from tests.plugins.prefect_env import provisioner_environment


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
