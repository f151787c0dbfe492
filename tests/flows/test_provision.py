"""The provision and release flows on real PostgreSQL, Docker, Prefect and the provider simulator."""

from __future__ import annotations

import threading

import pytest
from prefect.client.orchestration import get_client
from prefect.states import Cancelling

from flows.provision import ProvisionResult, provision_session
from flows.release import release_session
from provisioner.steps.request import ProvisionRequest
from provisioner.store import LeaseOutcome, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.support import (
    BackgroundProvision,
    device_containers,
    device_of,
    newest_session_in,
    session,
    wait_for,
)

pytestmark = pytest.mark.docker


def leases(deps, session_id):
    with deps.sessions() as db:
        return [(x.provider, x.outcome, x.attempt) for x in lease_repo.leases_for_session(db, session_id)]


def containers_of(runtime, session_id):
    from provisioner.steps.deps import get_deps

    return device_containers(get_deps(), runtime, session_id)


class TestProvision:
    def test_happy_path_to_verified_then_release(self, provisioner_env, sim, runtime):
        deps = provisioner_env
        sim.set_sms_delay(0.5)
        result = provision_session(request=ProvisionRequest(providers=["sms_activate"]))
        assert isinstance(result, ProvisionResult)
        assert (
            result.state == "verified" and result.code and result.stream_url.startswith("http://127.0.0.1:")
        )
        assert f"/vnc/{result.session_id}/vnc.html" in result.stream_url  # the gateway's, not a port
        assert result.phone.endswith(session(deps, result.session_id).phone_number[-4:])
        assert "•" in result.phone
        row = session(deps, result.session_id)
        assert row.verification_code == result.code and row.ready_at is not None
        assert leases(deps, result.session_id) == [("sms_activate", LeaseOutcome.FINISHED, 1)]
        running = containers_of(runtime, result.session_id)
        assert sorted(c.role for c in running) == ["device", "stream"]
        assert all(c.state == "running" for c in running)
        ledger = sim.ledger()
        assert len(ledger.purchases) == 1 and len(ledger.finishes) == 1 and ledger.settled

        with deps.sessions() as db:
            states = [e.to_state for e in repo.recent_events(db, result.session_id)]
        # The device first (cold-booted: the pool is empty), then the number (noted, then awaiting_code).
        assert states == [
            "requested",
            "launching",
            "awaiting_number",
            "awaiting_number",
            "awaiting_code",
            "awaiting_code",
            "verified",
        ]
        device = device_of(deps, result.session_id)
        assert device.state == "claimed" and device.boot_s > 0 and device.profile == "stub"
        assert row.device_container == device.device_container
        with deps.sessions() as db:
            (lease,) = lease_repo.leases_for_session(db, result.session_id)
        assert lease.requested_at >= device.ready_at  # the number's clock starts with a usable screen

        message = release_session(session_id=result.session_id)
        assert "is now released" in message
        assert containers_of(runtime, result.session_id) == []
        assert device_of(deps, result.session_id).state == "retired"  # never back to the pool
        assert session(deps, result.session_id).state == State.RELEASED
        again = release_session(session_id=result.session_id)
        assert "was already released" in again

    def test_no_numbers_at_first_provider_falls_back_to_the_second(self, provisioner_env, sim):
        sim.set_sms_delay(0.2)
        sim.inject("no_numbers", protocol="sms_man", times=None)
        result = provision_session(request=ProvisionRequest(providers=["sms_man", "onlinesim"]))
        assert result.state == "verified" and result.provider == "onlinesim"
        assert leases(provisioner_env, result.session_id) == [
            ("sms_man", LeaseOutcome.FAILED, 1),
            ("onlinesim", LeaseOutcome.FINISHED, 1),
        ]

    def test_provider_failing_transiently_falls_back_to_the_next(self, provisioner_env, sim):
        sim.set_sms_delay(0.2)
        sim.inject("http", status=502, protocol="sms_man", times=None)
        result = provision_session(request=ProvisionRequest(providers=["sms_man", "sms_activate"]))
        assert result.state == "verified" and result.provider == "sms_activate"
        assert leases(provisioner_env, result.session_id) == [
            ("sms_man", LeaseOutcome.FAILED, 1),
            ("sms_activate", LeaseOutcome.FINISHED, 1),
        ]
        assert sim.purchases == 1

    def test_http_500_twice_then_success_buys_exactly_once(self, provisioner_env, sim):
        sim.set_sms_delay(0.2)
        sim.inject("http", status=500, protocol="sms_activate", action="getNumber", times=2)
        result = provision_session(request=ProvisionRequest(providers=["sms_activate"]))
        assert result.state == "verified"
        assert sim.purchases == 1
        outcomes = [o for _, o, _ in leases(provisioner_env, result.session_id)]
        assert outcomes == [LeaseOutcome.FAILED, LeaseOutcome.FAILED, LeaseOutcome.FINISHED]

    def test_code_never_arrives_then_second_number_gets_it(self, provisioner_env, sim):
        def deliver_to_second_number():
            wait_for(lambda: len(sim.ledger().purchases) >= 2, timeout=60)
            second = sim.ledger().purchases[1].activation_id
            sim.deliver(second, "424242")

        helper = threading.Thread(target=deliver_to_second_number, daemon=True)
        helper.start()
        result = provision_session(
            request=ProvisionRequest(providers=["sms_activate"], code_timeout_s=2, number_attempts=2)
        )
        helper.join(timeout=5)
        assert result.state == "verified" and result.code == "424242"
        ledger = sim.ledger()
        assert len(ledger.purchases) == 2 and len(ledger.refunds) == 1 and len(ledger.finishes) == 1
        assert ledger.refunds[0].activation_id == ledger.purchases[0].activation_id
        assert ledger.settled
        assert [o for _, o, _ in leases(provisioner_env, result.session_id)] == [
            LeaseOutcome.CANCELLED,
            LeaseOutcome.FINISHED,
        ]

    def test_no_code_on_any_number_fails_and_refunds_everything(self, provisioner_env, sim, runtime):
        state = provision_session(
            request=ProvisionRequest(providers=["sms_activate"], code_timeout_s=1, number_attempts=2),
            return_state=True,
        )
        assert state.is_failed()
        ledger = sim.ledger()
        assert len(ledger.purchases) == 2 and len(ledger.refunds) == 2 and ledger.settled
        with provisioner_env.sessions() as db:
            row = repo.list_sessions(db, limit=1)[0]
        assert row.state == State.FAILED and "CodeNotReceived" in row.last_error
        assert containers_of(runtime, row.id) == []

    def test_device_that_exits_fails_before_any_number_is_bought_and_leaves_no_container(
        self, provisioner_env, sim, runtime
    ):
        state = provision_session(
            request=ProvisionRequest(providers=["sms_activate"], device_profile="stub-exits"),
            return_state=True,
        )
        assert state.is_failed()
        with provisioner_env.sessions() as db:
            row = repo.list_sessions(db, limit=1)[0]
        assert row.state == State.FAILED
        assert row.last_error.startswith("ContainerExited: container ")
        assert "(device profile stub-exits) exited with code 3" in row.last_error
        assert "FAKE_EXIT_CODE=3" in row.last_error  # the device's own last log line
        assert containers_of(runtime, row.id) == []
        assert device_of(provisioner_env, row.id).state == "failed"
        assert sim.ledger().purchases == []  # the device comes first: nothing was paid for
        assert leases(provisioner_env, row.id) == []

    def test_stop_error_fails_at_once_naming_the_setting(self, provisioner_env, sim, monkeypatch):
        from provisioner.settings import get_settings
        from provisioner.steps.deps import reset_deps

        monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_ACTIVATE__API_KEY", "wrong-key-123")
        get_settings.cache_clear()
        reset_deps()
        state = provision_session(
            request=ProvisionRequest(providers=["sms_activate", "sms_man"]), return_state=True
        )
        assert state.is_failed()
        assert "PROVISIONER_PROVIDERS__SMS_ACTIVATE__API_KEY" in state.message
        assert "wrong-key-123" not in state.message
        assert sim.purchases == 0

    def test_cancelled_while_waiting_for_the_code(self, provisioner_env, sim, runtime):
        deps = provisioner_env
        provision = BackgroundProvision(ProvisionRequest(providers=["sms_activate"], code_timeout_s=60))
        row = newest_session_in(deps, State.AWAITING_CODE)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(row.flow_run_id, Cancelling(), force=True)
        assert provision.join().is_cancelled()
        assert session(deps, row.id).state == State.CANCELLED
        assert containers_of(runtime, row.id) == []
        assert [o for _, o, _ in leases(deps, row.id)] == [LeaseOutcome.CANCELLED]
        assert sim.ledger().settled

    def test_cancelled_while_booting_buys_no_number(self, provisioner_env, sim, runtime):
        """A run cancelled from the UI during a slow boot (on the executor there is no process to
        signal) ends once the boot does, before a number is bought."""
        deps = provisioner_env
        provision = BackgroundProvision(
            ProvisionRequest(providers=["sms_activate"], device_profile="stub-boot-10", code_timeout_s=60)
        )
        row = newest_session_in(deps, State.LAUNCHING)
        # The session is launching a moment before its device row is written.
        wait_for(lambda: getattr(device_of(deps, row.id), "state", None) == "booting", timeout=30)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(row.flow_run_id, Cancelling(), force=True)
        assert provision.join(timeout=120).is_cancelled()
        assert session(deps, row.id).state == State.CANCELLED
        assert containers_of(runtime, row.id) == []
        assert sim.ledger().purchases == [] and leases(deps, row.id) == []


class TestEarlyCancel:
    def test_cancel_refused_as_too_early_is_waited_out_never_rebought(self, provisioner_env, sim):
        sim.configure(min_cancel_s=2.0, early_cancel_style="http409")

        def deliver_to_second_number():
            wait_for(lambda: len(sim.ledger().purchases) >= 2, timeout=60)
            sim.deliver(sim.ledger().purchases[1].activation_id, "777111")

        helper = threading.Thread(target=deliver_to_second_number, daemon=True)
        helper.start()
        result = provision_session(
            request=ProvisionRequest(providers=["sms_activate"], code_timeout_s=0.5, number_attempts=2)
        )
        helper.join(timeout=5)
        assert result.state == "verified" and result.code == "777111"
        ledger = sim.ledger()
        # The first number was cancelled once its minimum time passed, then exactly one more was bought.
        assert [e.kind for e in ledger.entries] == ["purchase", "refund", "purchase", "finish"]
        assert ledger.settled


class TestReleaseDuringProvision:
    def test_release_while_waiting_for_the_code_ends_the_provision_without_a_new_number(
        self, provisioner_env, sim, runtime
    ):
        deps = provisioner_env
        provision = BackgroundProvision(
            ProvisionRequest(providers=["sms_activate"], code_timeout_s=30, number_attempts=3)
        )
        row = newest_session_in(deps, State.AWAITING_CODE)
        assert "is now released" in release_session(session_id=row.id)
        state = provision.join()
        assert state.is_failed() and "already ended" in state.message
        assert session(deps, row.id).state == State.RELEASED
        assert containers_of(runtime, row.id) == []
        ledger = sim.ledger()
        assert len(ledger.purchases) == 1 and ledger.settled
