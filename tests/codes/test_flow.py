"""The provision flow (real Prefect, Docker, PostgreSQL, simulator) woken by the code watcher."""

from __future__ import annotations

import pytest

from flows.provision import ProvisionResult, provision_session
from provisioning.request import ProvisionRequest
from store import repository as repo
from tests.codes.conftest import WATCHER_ENV, running_watcher

pytestmark = pytest.mark.docker


def test_a_provision_is_woken_by_the_watcher_and_never_polls_the_provider(provisioner_env, sim, monkeypatch):
    for key, value in WATCHER_ENV.items():
        monkeypatch.setenv(key, value)
    from provisioning.deps import get_deps, reset_deps
    from settings import get_settings

    get_settings.cache_clear()
    reset_deps()
    deps = get_deps()
    sim.set_sms_delay(1.0)
    with running_watcher(deps, "sms_activate") as watcher:
        result = provision_session(request=ProvisionRequest(providers=["sms_activate"]))
        watcher_checks = watcher.requests
    assert isinstance(result, ProvisionResult)
    assert result.state == "verified"
    with deps.sessions() as db:
        reasons = [e.reason for e in repo.recent_events(db, result.session_id)]
    assert [r for r in reasons if r.startswith("code received on")][0].endswith("(watcher)")
    status_checks = [a for _, a, _ in sim.calls if a == "getStatus"]
    assert len(status_checks) == watcher_checks  # every status check was the watcher's
