"""SMS-MAN quirks: error_msg as a string or an object, reject/close, HTTP 400 for a bad application."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from providers import build_provider
from providers.errors import CancelTooEarly, NotRefundable, NotSupported, StopError, UnavailableError
from providers.sms_man import SmsManProvider
from provisioner.settings.model import ProviderSettings
from tests.providers.specs import KEY


@pytest.fixture
def client(make_provider):
    return make_provider("sms_man")


class TestErrors:
    @pytest.mark.parametrize(
        ("code", "error"),
        [("wrong_token", StopError), ("balance", StopError), ("no_numbers", UnavailableError),
         ("something_new", UnavailableError)],
    )  # fmt: skip
    def test_error_codes(self, sim, client, code, error):
        sim.inject("error", code=code, protocol="sms_man", action="get-number")
        with pytest.raises(error) as caught:
            client.acquire("3", "1", None)
        assert caught.value.code == code and caught.value.action == "get-number"

    @pytest.mark.parametrize(
        "body",
        [
            {"success": False, "error_code": "wrong_token", "error_msg": "Wrong token!"},
            {"success": False, "error_code": "wrong_token", "error_msg": {"token": "Wrong token!"}},
            {"success": False, "error_msg": {"token": "Wrong token!"}},
        ],
    )
    def test_error_msg_string_or_object(self, body):
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
        settings = ProviderSettings(api_key=KEY, base_url="https://sms-man.invalid/control/", timeout_s=1)
        with (
            httpx.Client(transport=transport) as http,
            pytest.raises(StopError, match="Wrong token!") as caught,
        ):
            SmsManProvider(settings, http).balance()
        assert "PROVISIONER_PROVIDERS__SMS_MAN__API_KEY" in str(caught.value)

    def test_wrong_application_is_http_400(self, sim, client):
        with pytest.raises(StopError, match="PROVISIONER_PROVIDERS__SMS_MAN__SERVICES"):
            client.acquire("999", "1", None)


class TestWire:
    def test_number_gets_a_plus_and_price_from_get_prices(self, sim, client):
        sim.set_offer("1", "2", "0.15", 3)
        lease = client.acquire("1", "2", Decimal("1"))
        assert lease.phone == "+7900000" + lease.activation_id and lease.price == Decimal("0.15")
        assert (
            "sms_man",
            "get-number",
            {"country_id": "2", "application_id": "1", "currency": "USD", "maxPrice": "1"},
        ) in sim.calls

    def test_cancel_is_reject_and_finish_is_close(self, sim, client):
        first, second = client.acquire("3", "1", None), client.acquire("3", "1", None)
        client.cancel(first)
        sim.deliver(second.activation_id, "77")
        client.finish(second)
        statuses = [params["status"] for _, action, params in sim.calls if action == "set-status"]
        assert statuses == ["reject", "close"] and sim.ledger().settled

    def test_no_second_code(self, sim, client):
        lease = client.acquire("3", "1", None)
        with pytest.raises(NotSupported):
            client.request_another_code(lease)


def set_statuses(sim) -> list[str]:
    return [params["status"] for _, action, params in sim.calls if action == "set-status"]


class TestCancelNeverCloses:
    def test_cancel_after_code_is_not_refundable(self, sim, client):
        lease = client.acquire("3", "1", None)
        sim.deliver(lease.activation_id, "31")
        with pytest.raises(NotRefundable):
            client.cancel(lease)
        assert set_statuses(sim) == ["reject"] and sim.ledger().open == [lease.activation_id]

    def test_reject_refused_while_waiting_is_left_pending(self, sim, client):
        lease = client.acquire("3", "1", None)
        sim.inject("error", code="wrong_status", protocol="sms_man", action="set-status")
        with pytest.raises(CancelTooEarly) as caught:
            client.cancel(lease)
        assert caught.value.retry_after_s > 0 and set_statuses(sim) == ["reject"]
        assert sim.ledger().open == [lease.activation_id] and sim.ledger().finishes == []

    def test_reject_of_an_expired_request_is_done(self, sim, client):
        lease = client.acquire("3", "1", None)
        sim.advance(sim.state.config.lifetime_s + 1)
        client.cancel(lease)
        assert set_statuses(sim) == ["reject"] and sim.ledger().settled


class TestMaxPrice:
    @pytest.mark.parametrize(("max_price", "sent"), [("2", "2"), ("2.30", "3"), ("0.5", "1")])
    def test_integer_max_price_with_the_account_currency(self, sim, max_price, sent):
        sim.set_offer("3", "1", "0.40", 3)
        settings = ProviderSettings(
            api_key=KEY, base_url=sim.base_urls["sms_man"], timeout_s=2, currency="RUB"
        )
        client = build_provider("sms_man", settings)
        try:
            lease = client.acquire("3", "1", Decimal(max_price))
        finally:
            client.close()
        [params] = [p for _, action, p in sim.calls if action == "get-number"]
        assert (params["maxPrice"], params["currency"]) == (sent, "RUB") and lease.currency == "RUB"

    def test_simulator_refuses_a_fractional_max_price(self, sim):
        reply = httpx.get(
            sim.base_urls["sms_man"] + "get-number",
            params={"token": KEY, "country_id": "1", "application_id": "3", "maxPrice": "2.5"},
        )
        assert reply.json()["error_code"] == "wrong_max_price" and sim.purchases == 0
