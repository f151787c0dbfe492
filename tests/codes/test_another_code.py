"""Asking for another code after the first (POST /sessions/{id}/code, `provisioner code`): the
provider is asked (setStatus 3 / setOperationRevise) and the watcher records the next code."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from provisioner.cli.main import app as cli_app
from provisioner.gateway.app import create_app
from provisioner.steps import codes
from provisioner.store import LeaseOutcome, LeaseRow, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.codes.support import GATEWAY_TOKEN, running_watcher
from tests.harness.gateway import RecordingRuns, serve
from tests.support import rent, wait_for


def verified(deps, provider: str, first_code: str) -> tuple[str, int, str]:
    """A verified session whose number got ``first_code`` and is still open."""
    sid, lease_id, activation_id = rent(deps, provider)
    with deps.sessions.begin() as db:
        for state in (State.LAUNCHING, State.AWAITING_CODE):
            repo.transition(db, sid, state, reason="test", actor="test")
    assert codes.record_code(deps, lease_id, first_code, via="watcher", actor="test")
    with deps.sessions.begin() as db:
        repo.transition(db, sid, State.VERIFIED, reason="code received", actor="test")
    return sid, lease_id, activation_id


def lease(deps, lease_id: int) -> LeaseRow:
    with deps.sessions() as db:
        return db.get_one(LeaseRow, lease_id)


class TestAnotherCode:
    @pytest.mark.parametrize("provider", ["sms_activate", "onlinesim"])
    def test_api_asks_the_provider_and_the_watcher_records_the_next_code(self, codes_env, sim, provider):
        deps = codes_env
        sid, lease_id, activation_id = verified(deps, provider, "111111")
        sim.deliver(activation_id, "111111")  # the provider's side of the first code
        with serve(create_app(deps, runs=RecordingRuns())) as url, running_watcher(deps, provider):
            reply = httpx.post(
                f"{url}/sessions/{sid}/code", headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}
            )
            assert reply.status_code == 202
            assert reply.json() == {
                "session_id": sid,
                "lease_id": lease_id,
                "status": "waiting for another code",
            }
            revise = {"sms_activate": "setStatus", "onlinesim": "setOperationRevise"}[provider]
            assert [a for _, a, _ in sim.calls if a == revise] == [revise]
            sim.deliver(lease(deps, lease_id).activation_id, "222222")
            wait_for(lambda: lease(deps, lease_id).code == "222222", timeout=10)
        row = lease(deps, lease_id)
        assert row.outcome == LeaseOutcome.CODE_RECEIVED
        with deps.sessions() as db:
            assert repo.get_session(db, sid).verification_code == "222222"
            reasons = [e.reason for e in repo.recent_events(db, sid)]
        assert f"another code requested on {provider}" in reasons
        assert reasons[-1].startswith(f"code received on {provider}:") and reasons[-1].endswith("(watcher)")

    def test_a_number_finished_at_verification_gets_409_naming_the_setting(self, codes_env):
        deps = codes_env
        sid, lease_id, _ = verified(deps, "sms_activate", "111111")
        with deps.sessions.begin() as db:
            lease_repo.set_lease_outcome(db, lease_id, LeaseOutcome.FINISHED)
        with serve(create_app(deps, runs=RecordingRuns())) as url:
            headers = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}
            reply = httpx.post(f"{url}/sessions/{sid}/code", headers=headers)
            unknown = httpx.post(f"{url}/sessions/zzzzzzzzzzzz/code", headers=headers)
        assert reply.status_code == 409
        assert "PROVISIONER_CODES__KEEP_NUMBER_OPEN" in reply.json()["detail"]
        assert unknown.status_code == 404

    def test_sms_man_cannot_give_another_code_and_says_so(self, codes_env):
        deps = codes_env
        sid, _, _ = verified(deps, "sms_man", "111111")
        with pytest.raises(codes.AnotherCodeRefused, match="another code"):
            codes.request_another_code(deps, sid, actor="test")

    def test_cli_code_asks_then_prints_the_next_code(self, codes_env, sim):
        deps = codes_env
        sid, lease_id, activation_id = verified(deps, "sms_activate", "111111")
        sim.deliver(activation_id, "111111")
        sim.set_sms_delay(0.3)  # the next SMS arrives by itself; no watcher: the command polls
        result = CliRunner().invoke(cli_app, ["code", sid, "--wait", "10"])
        assert result.exit_code == 0, result.output
        code = lease(deps, lease_id).code
        assert code != "111111"
        assert f"code:       {code}" in result.output
