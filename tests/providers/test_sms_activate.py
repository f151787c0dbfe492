"""SMS-Activate quirks: text replies, cancel status fallbacks, EARLY_CANCEL_DENIED as text or 409."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from providers.base import Cancelled, CodeReceived, Expired, Lease, Waiting
from providers.errors import (
    CancelTooEarly,
    MalformedReply,
    NotRefundable,
    NotSupported,
    PurchaseUnknown,
    StopError,
    TransientError,
    UnavailableError,
)
from providers.sms_activate import SmsActivateProvider
from provisioner.settings.model import ProviderSettings, SmsActivateSettings
from tests.providers.specs import KEY

LEASE = Lease("sms_activate", "1", "+79000000001", Decimal("1"), "RUB", datetime.now(UTC))


@pytest.fixture
def client(make_provider):
    return make_provider("sms_activate")


def statuses(sim) -> list[str]:
    return [params["status"] for _, action, params in sim.calls if action == "setStatus"]


class TestErrors:
    @pytest.mark.parametrize(
        ("reply", "error"),
        [("BAD_KEY", StopError), ("NO_BALANCE", StopError), ("BANNED:2026-01-01 10:00:00", StopError),
         ("BAD_SERVICE", StopError), ("NO_NUMBERS", UnavailableError),
         ("WRONG_MAX_PRICE:12.50", UnavailableError), ("CHANNELS_LIMIT", UnavailableError),
         ("ERROR_SQL", TransientError), ("TRY_AGAIN_LATER", TransientError),
         ("BAD_ACTION", TransientError),  # inside an action every copy has: an internal error
         ("The service is prohibited for sale by administration", UnavailableError),
         ("<html><body>oops</body></html>", PurchaseUnknown), ("ACCESS_NUMBER:1", PurchaseUnknown),
         ("ACCESS_NUMBER:12:not-a-phone", PurchaseUnknown)],
    )  # fmt: skip
    def test_purchase_replies(self, sim, client, reply, error):
        sim.inject("error", code=reply, protocol="sms_activate", action="getNumber")
        with pytest.raises(error):
            client.acquire("tg", "0", None)

    def test_bad_action_points_at_the_base_url(self, sim, client):
        sim.inject("error", code="BAD_ACTION", protocol="sms_activate")
        with pytest.raises(StopError, match="PROVISIONER_PROVIDERS__SMS_ACTIVATE__BASE_URL"):
            client.balance()

    def test_wrong_max_price_from_the_provider(self, sim, client):
        sim.set_offer("tg", "0", "15", 5)
        sim.inject("error", code="WRONG_MAX_PRICE:15.00", protocol="sms_activate", action="getPrices")
        with pytest.raises(UnavailableError, match="WRONG_MAX_PRICE"):
            client.price("tg", "0")

    def test_bare_409_is_transient(self, sim, client):
        lease = client.acquire("tg", "0", None)
        sim.inject("http", status=409, protocol="sms_activate", action="setStatus")
        with pytest.raises(TransientError):
            client.cancel(lease)


class TestCancel:
    def test_status_8_first(self, sim, client):
        client.cancel(client.acquire("tg", "0", None))
        assert statuses(sim) == ["8"] and sim.ledger().settled

    def test_bad_status_falls_back_to_legacy_minus_1(self, sim, client):
        sim.configure(sms_activate_cancel_statuses=("-1",))
        client.cancel(client.acquire("tg", "0", None))
        assert statuses(sim) == ["8", "-1"] and sim.ledger().settled

    def test_refusing_8_and_minus_1_never_sends_6(self, sim, client):
        sim.configure(sms_activate_cancel_statuses=())
        lease = client.acquire("tg", "0", None)
        with pytest.raises(UnavailableError, match="every cancel status"):
            client.cancel(lease)
        assert statuses(sim) == ["8", "-1"]  # 6 would finish (charge) it at most providers
        assert sim.ledger().open == [lease.activation_id] and sim.ledger().finishes == []

    def test_cancel_of_a_finished_activation_is_not_refundable(self, sim, client):
        lease = client.acquire("tg", "0", None)
        sim.deliver(lease.activation_id, "12")
        client.finish(lease)
        with pytest.raises(NotRefundable):
            client.cancel(lease)
        client.finish(lease)  # finishing again is done
        assert sim.ledger().settled and len(sim.ledger().finishes) == 1 and sim.ledger().refunds == []

    def test_configured_statuses_are_used_in_order(self, sim, provider_settings):
        sim.configure(sms_activate_cancel_statuses=("6",))  # OnlineSim's copy refunds on 6
        base = provider_settings("sms_activate")
        settings = SmsActivateSettings(
            api_key=base.api_key, base_url=base.base_url, timeout_s=base.timeout_s, cancel_statuses=["6"]
        )
        client = SmsActivateProvider(settings)
        try:
            client.cancel(client.acquire("tg", "0", None))
        finally:
            client.close()
        assert statuses(sim) == ["6"] and sim.ledger().settled and len(sim.ledger().refunds) == 1

    def test_no_activation_means_already_cancelled(self, sim, client):
        lease = client.acquire("tg", "0", None)
        sim.inject("error", code="NO_ACTIVATION", protocol="sms_activate", action="setStatus")
        client.cancel(lease)
        assert statuses(sim) == ["8"]

    def test_early_cancel_denied_as_text(self, sim, client):
        sim.configure(min_cancel_s=60)
        with pytest.raises(CancelTooEarly) as caught:
            client.cancel(client.acquire("tg", "0", None))
        assert caught.value.retry_after_s == 120  # no time given: the common default

    def test_early_cancel_denied_as_409_json(self, sim, client):
        sim.configure(min_cancel_s=60, early_cancel_style="http409")
        lease = client.acquire("tg", "0", None)
        with pytest.raises(CancelTooEarly) as caught:
            client.cancel(lease)
        assert caught.value.retry_after_s == 60
        sim.advance(61)
        client.cancel(lease)
        assert sim.ledger().settled


class TestStatus:
    @pytest.mark.parametrize(
        ("reply", "result"),
        [("STATUS_WAIT_CODE", Waiting("STATUS_WAIT_CODE")), ("STATUS_WAIT_RESEND", Waiting("STATUS_WAIT_RESEND")),
         ("STATUS_WAIT_RETRY:4411", Waiting("STATUS_WAIT_RETRY")), ("STATUS_CANCEL", Cancelled("STATUS_CANCEL")),
         ("STATUS_OK:5512", CodeReceived("5512", "5512")), ("NO_ACTIVATION", Expired("NO_ACTIVATION"))],
    )  # fmt: skip
    def test_get_status_replies(self, reply, result):
        transport = httpx.MockTransport(lambda request: httpx.Response(200, text=reply))
        settings = ProviderSettings(
            api_key=KEY, base_url="https://copy.invalid/stubs/handler_api.php", timeout_s=1
        )
        with httpx.Client(transport=transport) as http:
            provider = SmsActivateProvider(settings, http)
            assert provider.check(LEASE) == result

    def test_wait_retry_after_another_code(self, sim, client):
        lease = client.acquire("tg", "0", None)
        sim.deliver(lease.activation_id, "1111")
        client.request_another_code(lease)
        assert client.check(lease) == Waiting("STATUS_WAIT_RETRY")
        assert statuses(sim) == ["3"]


def mock_client(reply: httpx.Response | dict | str, status: int = 200) -> SmsActivateProvider:
    """A client whose every call gets `reply` (for reply shapes the simulator does not produce)."""

    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(reply, dict):
            return httpx.Response(status, json=reply)
        return httpx.Response(status, text=reply)

    settings = ProviderSettings(
        api_key=KEY, base_url="https://copy.invalid/stubs/handler_api.php", timeout_s=1
    )
    return SmsActivateProvider(settings, httpx.Client(transport=httpx.MockTransport(answer)))


@pytest.fixture
def hero(sim, client):
    """The client against a provider speaking the status-codes dialect (Hero/Tiger-style)."""
    sim.set_dialect(KEY, "status-codes")
    return client


class TestStatusCodes:
    @pytest.mark.parametrize(
        ("token", "status", "error"),
        [("BAD_KEY", 401, StopError), ("NO_BALANCE", 402, StopError), ("BANNED", 403, StopError),
         ("WRONG_MAX_PRICE:12.50", 400, UnavailableError), ("CHANNELS_LIMIT", 403, UnavailableError),
         ("BAD_SERVICE", 400, StopError)],
    )  # fmt: skip
    def test_purchase_errors_as_http_statuses(self, sim, hero, token, status, error):
        sim.inject("error", code=token, protocol="sms_activate", action="getNumberV2")
        with pytest.raises(error) as caught:
            hero.acquire("tg", "0", None)
        assert caught.value.code == token.split(":")[0] and f"HTTP {status}" in str(caught.value)
        assert sim.purchases == 0

    def test_simulator_dialect_is_per_key(self, sim):
        sim.set_dialect("other-key", "status-codes")
        url = sim.base_urls["sms_activate"]
        reply = httpx.get(url, params={"api_key": "other-key", "action": "getStatus", "id": "1"})
        assert (reply.status_code, reply.text) == (401, "BAD_KEY")
        reply = httpx.get(url, params={"api_key": KEY, "action": "getStatus", "id": "1"})
        assert (reply.status_code, reply.text) == (200, "NO_ACTIVATION")  # this key speaks classic

    def test_unknown_id_is_404_and_ends_the_number(self, sim, hero):
        lease = hero.acquire("tg", "0", None)
        sim.advance(sim.state.config.lifetime_s + 1)
        reply = httpx.get(
            sim.base_urls["sms_activate"],
            params={"api_key": KEY, "action": "getStatus", "id": lease.activation_id},
        )
        assert (reply.status_code, reply.text) == (404, "NO_ACTIVATION")
        assert hero.check(lease) == Expired("NO_ACTIVATION")
        hero.cancel(lease)  # ended: nothing to cancel
        assert sim.ledger().settled and len(sim.ledger().refunds) == 1

    def test_cancelled_reads_access_cancel(self, sim, hero):
        lease = hero.acquire("tg", "0", None)
        hero.cancel(lease)
        assert hero.check(lease) == Cancelled("ACCESS_CANCEL")

    @pytest.mark.parametrize("token", ["OTP_RECEIVED", "FREE_CANCELLATION_EXPIRED"])
    def test_409_on_cancel_is_not_refundable_and_not_retried(self, sim, hero, token):
        lease = hero.acquire("tg", "0", None)
        sim.inject("error", code=token, protocol="sms_activate", action="setStatus")
        with pytest.raises(NotRefundable) as caught:
            hero.cancel(lease)
        assert caught.value.code == token and statuses(sim) == ["8"]

    def test_early_cancel_is_403_json_with_its_wait(self, sim, hero):
        sim.configure(min_cancel_s=90)
        lease = hero.acquire("tg", "0", None)
        with pytest.raises(CancelTooEarly) as caught:
            hero.cancel(lease)
        assert caught.value.retry_after_s == 90 and "HTTP 403" in str(caught.value)

    @pytest.mark.parametrize(
        ("status", "body", "result"),
        [(404, "NOT_FOUND", Expired("NOT_FOUND")), (409, "ACTIVATION_NOT_ACTIVE", Expired("ACTIVATION_NOT_ACTIVE")),
         (404, '{"title":"NO_ACTIVATION"}', Expired("NO_ACTIVATION"))],
    )  # fmt: skip
    def test_get_status_of_an_ended_number(self, status, body, result):
        assert mock_client(body, status).check(LEASE) == result

    @pytest.mark.parametrize(
        ("status", "body", "error"),
        [(401, "Unauthorized", StopError), (403, "", StopError), (409, "Conflict", TransientError),
         (404, "<html>Not Found</html>", MalformedReply), (400, "{}", MalformedReply)],
    )  # fmt: skip
    def test_statuses_without_a_token(self, status, body, error):
        with pytest.raises(error):
            mock_client(body, status).check(LEASE)


class TestPrices:
    def test_price_map_takes_the_cheapest_level_in_stock(self):
        info = mock_client({"0": {"tg": {"8.00": 0, "9.50": 4, "12.00": 2}}}).price("tg", "0")
        assert (info.price, info.available) == (Decimal("9.50"), 6)

    def test_service_first_prices_have_no_count(self):
        info = mock_client({"tg": {"0": 7.5, "1": 9}}).price("tg", "0")
        assert (info.price, info.available) == (Decimal("7.5"), None)

    @pytest.mark.parametrize(
        ("msg", "setting"), [("service is incorrect", "SERVICES"), ("country is incorrect", "COUNTRIES")]
    )
    def test_status_false_is_a_refused_filter(self, msg, setting):
        with pytest.raises(StopError, match=f"PROVISIONER_PROVIDERS__SMS_ACTIVATE__{setting}") as caught:
            mock_client({"status": "false", "msg": msg}).price("tg", "0")
        assert msg in str(caught.value)

    def test_price_map_from_the_simulator_buys_within_max(self, sim, client):
        sim.set_dialect(KEY, "price-map")
        lease = client.acquire("tg", "0", Decimal("10"))
        assert lease.price == Decimal("10.00") == sim.ledger().purchases[0].amount


class TestNumberV2:
    def test_detected_once_when_missing(self, sim, client):
        client.acquire("tg", "0", None)
        client.acquire("tg", "0", None)
        buys = [action for _, action, _ in sim.calls if action.startswith("getNumber")]
        assert buys == ["getNumberV2", "getNumber", "getNumber"]

    def test_auction_records_the_amount_charged(self, sim, client):
        sim.set_dialect(KEY, "auction")
        assert client.price("tg", "0").price == Decimal("10.00")
        lease = client.acquire("tg", "0", Decimal("10"))
        [purchase] = sim.ledger().purchases
        assert (lease.price, lease.currency) == (Decimal("8.70"), "USD") and purchase.amount == Decimal(
            "8.70"
        )
        assert client.balance() == Decimal("91.30")

    @pytest.mark.parametrize(("currency", "expected"), [(978, "EUR"), ("USD", "USD"), (None, "RUB")])
    def test_currency_as_iso_number_or_code(self, currency, expected):
        body = {
            "activationId": 5,
            "phoneNumber": "79001112233",
            "activationCost": "1.5",
            "currency": currency,
        }
        lease = mock_client(body).acquire("tg", "0", None)
        assert (lease.activation_id, lease.phone, lease.price, lease.currency) == (
            "5", "+79001112233", Decimal("1.5"), expected,
        )  # fmt: skip


class TestListOpenActivations:
    def test_lists_only_open_activations_with_service_country_and_time(self, sim, client):
        kept = client.acquire("tg", "0", None)
        client.cancel(client.acquire("wa", "1", None))
        [found] = client.list_open_activations()
        assert found.lease.activation_id == kept.activation_id and found.lease.phone == kept.phone
        assert (found.service, found.country) == ("tg", "0")
        assert found.bought_at is not None and abs((found.bought_at - kept.bought_at).total_seconds()) < 5

    def test_unsupported_is_detected_once_and_remembered(self, sim, client):
        sim.configure(sms_activate_lists_activations=False)
        for _ in range(2):
            with pytest.raises(NotSupported):
                client.list_open_activations()
        assert [action for _, action, _ in sim.calls].count("getActiveActivations") == 1

    @pytest.mark.parametrize(
        "body",
        [
            {"status": "success", "activeActivations": [{"activationId": "77", "serviceCode": "tg",
             "countryCode": "0", "phoneNumber": "79001", "activationCost": "7.50",
             "activationTime": "2026-11-29 07:00:00"}]},
            {"status": "success", "activeActivations": {"count": 1}, "data": [{"activationId": 77,
             "serviceCode": "tg", "countryCode": 0, "phoneNumber": "79001", "activationCost": 7.5,
             "activationTime": "2026-11-29 07:00:00"}]},
        ],
        ids=["list", "data"],
    )  # fmt: skip
    def test_both_reply_shapes(self, body):
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
        settings = ProviderSettings(
            api_key=KEY, base_url="https://copy.invalid/stubs/handler_api.php", timeout_s=1
        )
        with httpx.Client(transport=transport) as http:
            [found] = SmsActivateProvider(settings, http).list_open_activations()
        assert (found.lease.activation_id, found.service, found.country) == ("77", "tg", "0")
        assert found.lease.price == Decimal("7.5") and found.lease.phone == "+79001"
        assert found.bought_at == datetime(2026, 11, 29, 7, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        "reply", [httpx.Response(404, text="Not Found"), httpx.Response(200, text="BAD_ACTION")]
    )
    def test_bad_action_or_404_means_unsupported(self, reply):
        transport = httpx.MockTransport(lambda request: reply)
        settings = ProviderSettings(
            api_key=KEY, base_url="https://copy.invalid/stubs/handler_api.php", timeout_s=1
        )
        with httpx.Client(transport=transport) as http, pytest.raises(NotSupported):
            SmsActivateProvider(settings, http).list_open_activations()
