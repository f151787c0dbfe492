"""The real provision flow against providers speaking other dialects of the SMS-Activate protocol:
Hero/Tiger-style HTTP status codes and auction pricing (simulator.dialects); and what a cancel
records at each provider when the provider will not refund."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from flows.provision import provision_session
from provisioner.steps import numbers
from provisioner.steps.request import ProvisionRequest
from provisioner.store import LeaseOutcome, LeaseRow
from provisioner.store import leases as lease_repo
from tests.plugins.simulator import SIM_KEY
from tests.support import rent, wait_for

pytestmark = pytest.mark.docker


def lease_rows(deps, session_id):
    with deps.sessions() as db:
        return lease_repo.leases_for_session(db, session_id)


def outcomes(deps, session_id):
    return [(row.provider, row.outcome) for row in lease_rows(deps, session_id)]


def deliver_to_purchase(sim, n: int, code: str, *, after_action: str | None = None) -> threading.Thread:
    """In the background: once the n-th purchase (and, if given, a later call of `after_action`)
    is seen, deliver `code` to that activation."""

    def run() -> None:
        wait_for(lambda: len(sim.ledger().purchases) >= n, timeout=60)
        if after_action:
            wait_for(lambda: any(action == after_action for _, action, _ in sim.calls), timeout=60)
        sim.deliver(sim.ledger().purchases[n - 1].activation_id, code)

    helper = threading.Thread(target=run, daemon=True)
    helper.start()
    return helper


@pytest.fixture
def hero(sim):
    """The sms_activate provider speaks the status-codes dialect (errors as HTTP statuses)."""
    sim.set_dialect(SIM_KEY, "status-codes")
    return sim


class TestStatusCodeProvider:
    def test_verifies(self, provisioner_env, hero):
        hero.set_sms_delay(0.2)
        result = provision_session(request=ProvisionRequest(providers=["sms_activate"]))
        assert result.state == "verified" and result.provider == "sms_activate"
        assert outcomes(provisioner_env, result.session_id) == [("sms_activate", LeaseOutcome.FINISHED)]
        buys = [action for _, action, _ in hero.calls if action in ("getNumber", "getNumberV2")]
        assert buys == ["getNumberV2"]
        assert hero.ledger().settled and len(hero.ledger().finishes) == 1

    @pytest.mark.parametrize(("token", "status"), [("WRONG_MAX_PRICE:11.00", 400), ("CHANNELS_LIMIT", 403)])
    def test_falls_back_on_price_and_channel_limits(self, provisioner_env, hero, token, status):
        hero.set_sms_delay(0.2)
        hero.inject("error", code=token, protocol="sms_activate", action="getNumberV2", times=None)
        result = provision_session(request=ProvisionRequest(providers=["sms_activate", "sms_man"]))
        assert result.state == "verified" and result.provider == "sms_man"
        first, second = lease_rows(provisioner_env, result.session_id)
        assert (first.provider, first.outcome) == ("sms_activate", LeaseOutcome.FAILED)
        assert f"HTTP {status}" in first.provider_status and token.split(":")[0] in first.provider_status
        assert (second.provider, second.outcome) == ("sms_man", LeaseOutcome.FINISHED)
        assert [e.protocol for e in hero.ledger().purchases] == ["sms_man"]

    def test_404_ends_the_number_and_the_next_one_verifies(self, provisioner_env, hero):
        def expire_the_first_number() -> None:
            wait_for(lambda: len(hero.ledger().purchases) >= 1, timeout=60)
            wait_for(lambda: any(action == "getStatus" for _, action, _ in hero.calls), timeout=60)
            hero.advance(hero.state.config.lifetime_s + 1)  # the provider forgets it: 404 NO_ACTIVATION

        helper = threading.Thread(target=expire_the_first_number, daemon=True)
        helper.start()
        second = deliver_to_purchase(hero, 2, "5150")
        result = provision_session(request=ProvisionRequest(providers=["sms_activate"], number_attempts=2))
        helper.join(timeout=5)
        second.join(timeout=5)
        assert result.state == "verified" and result.code == "5150"
        rows = lease_rows(provisioner_env, result.session_id)
        assert [row.outcome for row in rows] == [LeaseOutcome.EXPIRED, LeaseOutcome.FINISHED]
        assert rows[0].provider_status == "NO_ACTIVATION"
        ledger = hero.ledger()
        assert len(ledger.refunds) == 1 and ledger.refunds[0].activation_id == rows[0].activation_id
        assert ledger.settled

    def test_cancel_after_the_code_arrived_is_recorded_finished_not_refunded(self, provisioner_env, hero):
        # The first number's code arrives while its cancel is in flight: the provider answers
        # 409 OTP_RECEIVED, so the number is finished (charged), recorded as such, and its code
        # verifies the session: no second number is bought.
        hero.inject("slow", delay_s=1.0, protocol="sms_activate", action="setStatus", times=1)
        late = deliver_to_purchase(hero, 1, "1111", after_action="setStatus")
        result = provision_session(
            request=ProvisionRequest(providers=["sms_activate"], code_timeout_s=1, number_attempts=2)
        )
        late.join(timeout=5)
        assert result.state == "verified" and result.code == "1111"
        [row] = lease_rows(provisioner_env, result.session_id)
        assert row.outcome == LeaseOutcome.FINISHED and "OTP_RECEIVED" in row.provider_status
        ledger = hero.ledger()
        assert len(ledger.purchases) == 1 and ledger.refunds == [] and len(ledger.finishes) == 1
        assert ledger.settled


def test_lease_records_the_amount_actually_charged(provisioner_env, sim, monkeypatch):
    monkeypatch.setattr(provisioner_env.provider("sms_activate"), "currency", "USD")  # auction bills USD
    sim.set_dialect(SIM_KEY, "auction")
    sim.set_sms_delay(0.2)
    result = provision_session(request=ProvisionRequest(providers=["sms_activate"]))
    assert result.state == "verified"
    [row] = lease_rows(provisioner_env, result.session_id)
    [purchase] = sim.ledger().purchases
    assert row.price == purchase.amount == Decimal("8.70") and row.currency == "USD"
    assert sim.balance(SIM_KEY) == Decimal("100") - Decimal("8.70")


def lease_row(deps, lease_id: int) -> LeaseRow:
    with deps.sessions() as db:
        return db.get_one(LeaseRow, lease_id)


class TestCancelRecordsWhatTheProviderDid:
    @pytest.mark.parametrize(
        ("provider", "dialect"),
        [("sms_activate", "classic"), ("sms_activate", "status-codes"), ("sms_man", "classic"),
         ("onlinesim", "classic")],
    )  # fmt: skip
    def test_a_code_that_arrived_before_the_cancel_is_finished_not_refunded(
        self, provisioner_env, sim, provider, dialect
    ):
        sim.set_dialect(SIM_KEY, dialect)
        _, lease_id, activation_id = rent(provisioner_env, provider)
        sim.deliver(activation_id, "8080")
        assert numbers.cancel_number(provisioner_env, lease_id) == "finished"
        assert lease_row(provisioner_env, lease_id).outcome == LeaseOutcome.FINISHED
        ledger = sim.ledger()
        assert [e.activation_id for e in ledger.finishes] == [activation_id] and ledger.refunds == []

    def test_sms_man_reject_refused_is_left_cancel_pending_never_closed(self, provisioner_env, sim):
        _, lease_id, activation_id = rent(provisioner_env, "sms_man")
        sim.inject("error", code="wrong_status", protocol="sms_man", action="set-status", times=None)
        with pytest.raises(numbers.CancelDeferred):
            numbers.cancel_number(provisioner_env, lease_id)
        row = lease_row(provisioner_env, lease_id)
        assert row.outcome == LeaseOutcome.CANCEL_PENDING and row.retry_after is not None
        assert [p["status"] for _, action, p in sim.calls if action == "set-status"] == ["reject"]
        ledger = sim.ledger()
        assert ledger.open == [activation_id] and ledger.finishes == [] and ledger.refunds == []
