"""OnlineSim quirks: `response` codes, getState arrays, TZ_INPOOL, setOperationOk as finish and cancel."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from providers.base import Expired, Waiting
from providers.errors import (
    CancelTooEarly,
    NotRefundable,
    PurchaseUnknown,
    StopError,
    TransientError,
    UnavailableError,
)
from providers.onlinesim import OnlineSimProvider, close_retry_after
from tests.providers.specs import KEY

STOP = ["ERROR_WRONG_KEY", "ERROR_NO_KEY", "ACCOUNT_BLOCKED", "ERROR_NO_SERVICE", "WARNING_LOW_BALANCE",
        "API_ACCESS_DISABLED", "API_ACCESS_IP", "ERROR_PARAMS"]  # fmt: skip
UNAVAILABLE = ["WARNING_NO_NUMS", "NO_NUMBER", "EXCEEDED_CONCURRENT_OPERATIONS", "DUPLICATE_OPERATION"]
TRANSIENT = ["INTERVAL_CONCURRENT_REQUESTS_ERROR", "TRY_AGAIN_LATER", "TIME_INTERVAL_ERROR"]
GONE = ["ERROR_WRONG_TZID", "ERROR_NO_OPERATIONS", "LIFICYCLE_NUM_EXPIRED"]


@pytest.fixture
def client(make_provider):
    return make_provider("onlinesim")


class TestErrors:
    @pytest.mark.parametrize(
        ("code", "error"),
        [(c, StopError) for c in STOP] + [(c, UnavailableError) for c in UNAVAILABLE]
        + [(c, TransientError) for c in TRANSIENT],
    )  # fmt: skip
    def test_purchase_error_codes(self, sim, client, code, error):
        sim.inject("error", code=code, protocol="onlinesim", action="getNum")
        with pytest.raises(error) as caught:
            client.acquire("telegram", "7", None)
        assert caught.value.code == code

    def test_no_complete_tzid_is_cancel_too_early(self, sim, client):
        lease = client.acquire("telegram", "7", None)
        sim.inject("error", code="NO_COMPLETE_TZID", protocol="onlinesim", action="setOperationOk")
        with pytest.raises(CancelTooEarly) as caught:
            client.cancel(lease)
        assert 100 < caught.value.retry_after_s <= 120

    @pytest.mark.parametrize("code", GONE)
    def test_cancel_of_a_gone_operation_is_done(self, sim, client, code):
        lease = client.acquire("telegram", "7", None)
        sim.inject("error", code=code, protocol="onlinesim", action="setOperationOk")
        client.cancel(lease)

    @pytest.mark.parametrize("code", GONE)
    def test_check_of_a_gone_operation_is_expired(self, sim, client, code):
        lease = client.acquire("telegram", "7", None)
        sim.inject("error", code=code, protocol="onlinesim", action="getState")
        assert isinstance(client.check(lease), Expired)


class TestWire:
    def test_get_state_is_an_array_with_msg_false(self, sim, client):
        lease = client.acquire("telegram", "7", None)
        reply = httpx.get(
            sim.base_urls["onlinesim"] + "getState.php", params={"apikey": KEY, "tzid": lease.activation_id}
        )
        [item] = reply.json()
        assert item["response"] == "TZ_NUM_WAIT" and item["msg"] is False and item["number"] == lease.phone
        assert client.check(lease) == Waiting("TZ_NUM_WAIT")

    def test_key_is_a_bearer_token_not_in_the_url(self, sim, client, caplog):
        caplog.set_level(logging.INFO, logger="httpx")
        client.balance()
        assert all("apikey" not in params for _, _, params in sim.calls)
        assert "getBalance.php" in caplog.text and KEY not in caplog.text

    def test_frozen_money_shows_in_zbalance_until_cancel(self, sim, client):
        lease = client.acquire("telegram", "7", None)
        url = sim.base_urls["onlinesim"] + "getBalance.php"
        assert httpx.get(url, params={"apikey": KEY}).json()["zbalance"] == 10.0
        client.cancel(lease)
        assert httpx.get(url, params={"apikey": KEY}).json() == {
            "response": 1,
            "balance": "100.00",
            "zbalance": 0.0,
        }


class TestInPool:
    def test_acquire_waits_for_the_number(self, sim, provider_settings):
        sim.configure(pool_s=0.3)
        client = OnlineSimProvider(provider_settings("onlinesim"), number_poll_s=0.05)
        try:
            lease = client.acquire("telegram", "7", Decimal("10"))
        finally:
            client.close()
        assert lease.phone.startswith("+7900")
        assert [action for _, action, _ in sim.calls].count("getState") >= 2

    def test_no_number_in_time_is_unknown_then_listed(self, sim, provider_settings):
        sim.configure(pool_s=5)
        client = OnlineSimProvider(provider_settings("onlinesim"), number_wait_s=0.1, number_poll_s=0.05)
        try:
            with pytest.raises(PurchaseUnknown, match="no number"):
                client.acquire("telegram", "7", None)
            [pooled] = client.list_open_activations()
            assert pooled.lease.phone == ""  # still TZ_INPOOL: not adoptable yet
            sim.advance(6)
            [found] = client.list_open_activations()
            assert found.lease.activation_id == sim.ledger().open[0] and found.lease.price == Decimal("10")
            assert (found.service, found.country, found.bought_at) == ("telegram", "7", None)
            client.cancel(found.lease)
        finally:
            client.close()
        assert sim.ledger().settled


class TestClose:
    @pytest.mark.parametrize(
        ("age_s", "wait_s"),
        [(0, 120), (100, 20), (120, 15), (135, 15), (150, 30), (180, 60), (240, 120), (5000, 600)],
    )
    def test_no_complete_tzid_backs_off(self, age_s, wait_s):
        now = datetime.now(UTC)
        assert close_retry_after(now - timedelta(seconds=age_s), now) == wait_s

    def test_refused_after_the_default_interval_waits_15_s_not_1(self, sim, client):
        lease = client.acquire("telegram", "7", None)
        old = replace(lease, bought_at=lease.bought_at - timedelta(seconds=125))
        sim.inject("error", code="NO_COMPLETE_TZID", protocol="onlinesim", action="setOperationOk")
        with pytest.raises(CancelTooEarly) as caught:
            client.cancel(old)
        assert caught.value.retry_after_s == 15

    def test_get_state_sends_clean_0(self, sim, client):
        client.check(client.acquire("telegram", "7", None))
        [params] = [p for _, action, p in sim.calls if action == "getState"]
        assert params["clean"] == "0" and params["message_to_code"] == "1"

    def test_cancel_after_code_does_not_close(self, sim, client):
        lease = client.acquire("telegram", "7", None)
        sim.deliver(lease.activation_id, "55")
        with pytest.raises(NotRefundable):
            client.cancel(lease)
        assert "setOperationOk" not in [action for _, action, _ in sim.calls]


class TestRevise:
    def test_a_new_tzid_is_followed(self, sim, client):
        sim.configure(onlinesim_revise_new_tzid=True)
        lease = client.acquire("telegram", "7", None)
        sim.deliver(lease.activation_id, "1111")
        following = client.request_another_code(lease)
        assert following.activation_id != lease.activation_id and following.phone == lease.phone
        assert isinstance(client.check(lease), Expired)  # the old tzid is gone
        assert client.check(following) == Waiting("TZ_NUM_WAIT")
        sim.deliver(lease.activation_id, "2222")  # the simulator's ledger keeps the first id
        assert client.check(following).code == "2222"
        client.finish(following)
        assert sim.ledger().settled and len(sim.ledger().finishes) == 1

    def test_the_same_tzid_keeps_the_lease(self, sim, client):
        lease = client.acquire("telegram", "7", None)
        sim.deliver(lease.activation_id, "1111")
        assert client.request_another_code(lease) == lease
