"""The provision flow (real Prefect, Docker, PostgreSQL, simulator) woken by the code watcher."""

from __future__ import annotations

import pytest

from flows.provision import ProvisionResult, provision_session
from provisioner.steps.request import ProvisionRequest
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.codes.support import WATCHER_ENV, running_watcher

pytestmark = pytest.mark.docker


def test_a_provision_is_woken_by_the_watcher_and_never_polls_the_provider(provisioner_env, sim, monkeypatch):
    for key, value in WATCHER_ENV.items():
        monkeypatch.setenv(key, value)
    from provisioner.settings import get_settings
    from provisioner.steps.deps import get_deps, reset_deps

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
    reads = [a for _, a, _ in sim.calls if a in ("getStatus", "getActiveActivations")]
    assert len(reads) == watcher_checks  # every status read was the watcher's


def test_kept_open_number_gives_another_code_and_is_finished_at_release(provisioner_env, sim, monkeypatch):
    from flows.release import release_session
    from provisioner.settings import get_settings
    from provisioner.steps import codes
    from provisioner.steps.deps import get_deps, reset_deps
    from provisioner.store import LeaseOutcome

    for key, value in WATCHER_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PROVISIONER_CODES__KEEP_NUMBER_OPEN", "true")
    get_settings.cache_clear()
    reset_deps()
    deps = get_deps()
    sim.set_sms_delay(0.5)
    with running_watcher(deps, "sms_activate"):
        result = provision_session(request=ProvisionRequest(providers=["sms_activate"]))
        assert result.state == "verified"
        with deps.sessions() as db:
            (lease,) = lease_repo.leases_for_session(db, result.session_id)
        assert (lease.outcome, lease.code) == (LeaseOutcome.CODE_RECEIVED, result.code)
        assert sim.ledger().finishes == []  # still open at the provider
        codes.request_another_code(deps, result.session_id, actor="test")
        second = codes.wait_for_code(deps, result.session_id, lease.id, timeout_s=10, actor="test")
    assert second.code is not None
    assert second.code != result.code
    with deps.sessions() as db:
        assert repo.get_session(db, result.session_id).verification_code == second.code
    assert "is now released" in release_session(session_id=result.session_id)
    with deps.sessions() as db:
        (lease,) = lease_repo.leases_for_session(db, result.session_id)
    assert lease.outcome == LeaseOutcome.FINISHED
    ledger = sim.ledger()
    assert [e.activation_id for e in ledger.finishes] == [lease.activation_id]
    assert ledger.settled
