"""Prefect and the whole provisioner environment for flow tests.

`prefect_api` starts Prefect's test harness (a real API server) once per session. `provisioner_env`
points the settings at the test database, the simulator (all three protocols) and a Docker runtime
with its own instance id, so a flow run here touches only what the test owns.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.plugins.docker_engine import TEST_NETWORK, TEST_PROFILES_FILE
from tests.plugins.postgres import adopt_identity
from tests.plugins.simulator import SIM_KEY


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def provisioner_environment(
    *, instance_id: str, sim_urls: dict[str, str], database_url: str
) -> dict[str, str]:
    """The PROVISIONER_* variables of a test run (also handed to subprocesses), as the deployment
    `instance_id` whose database is `database_url` (made its recorded identity now)."""
    adopt_identity(database_url, instance_id)
    env = {
        "PROVISIONER_INSTANCE_ID": instance_id,
        "PROVISIONER_DATABASE__URL": database_url,
        "PROVISIONER_DOCKER__NETWORK": TEST_NETWORK,
        "PROVISIONER_DOCKER__PROFILES_FILE": str(TEST_PROFILES_FILE),
        "PROVISIONER_DEFAULTS__POLL_INITIAL_S": "0.2",
        "PROVISIONER_DEFAULTS__POLL_MAX_S": "0.5",
        "PROVISIONER_DEFAULTS__CODE_TIMEOUT_S": "20",
        "PROVISIONER_DEFAULTS__SERVICE": "telegram",
        "PROVISIONER_DEFAULTS__COUNTRY": "RU",
        "PROVISIONER_PROVIDERS__ORDER": '["sms_activate", "sms_man", "onlinesim"]',
        "PROVISIONER_RECONCILE__GRACE_S": "1",
        "PROVISIONER_RECONCILE__PROVISIONING_DEADLINE_S": "1",
        "PROVISIONER_RECONCILE__HEARTBEAT_INTERVAL_S": "0.5",
        "PROVISIONER_RECONCILE__STALE_AFTER_S": "3",
        "PROVISIONER_RECONCILE__DEVICE_GRACE_S": "1",
        # The tests' gateways bind loopback; those that test auth configure it themselves.
        "PROVISIONER_GATEWAY__INSECURE_NO_AUTH": "true",
    }
    for name, url in sim_urls.items():
        env[f"PROVISIONER_PROVIDERS__{name.upper()}__API_KEY"] = SIM_KEY
        env[f"PROVISIONER_PROVIDERS__{name.upper()}__BASE_URL"] = url
        env[f"PROVISIONER_PROVIDERS__{name.upper()}__TIMEOUT_S"] = "3"
    return env


@pytest.fixture
def provisioner_env(monkeypatch, database_url, db_sessions, sim, runtime, prefect_api):
    """Settings for this test's flow runs; yields the process's Deps. Containers of the runtime's
    instance are removed afterwards, and their pair networks (the next test's passes start clean)."""
    from provisioner.settings import get_settings
    from provisioner.steps.deps import get_deps, reset_deps

    for key, value in provisioner_environment(
        instance_id=runtime.instance_id, sim_urls=sim.base_urls, database_url=database_url
    ).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    reset_deps()
    # Every provider's catalog learned now, before a test injects faults into the simulator.
    from provisioner.steps.catalogs import refresh_stale

    assert all(r.startswith("refreshed") for r in refresh_stale(get_deps(), force=True).values())
    try:
        yield get_deps()
    finally:
        for container in runtime.list_managed():
            runtime.remove(container.id)
        runtime.remove_orphan_networks()
        reset_deps()
        monkeypatch.undo()
        get_settings.cache_clear()
