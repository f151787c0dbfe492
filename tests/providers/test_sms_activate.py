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
    StopError,
    TransientError,
    UnavailableError,
)
from providers.sms_activate import SmsActivateProvider
from settings.model import ProviderSettings
from tests.providers.conftest import KEY

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
         ("<html><body>oops</body></html>", MalformedReply), ("ACCESS_NUMBER:1", MalformedReply),
         ("ACCESS_NUMBER:12:not-a-phone", MalformedReply)],
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

    def test_then_to_6_like_onlinesims_copy(self, sim, client):
        sim.configure(sms_activate_cancel_statuses=())
        client.cancel(client.acquire("tg", "0", None))
        assert statuses(sim) == ["8", "-1", "6"]
        assert sim.ledger().settled and client.balance() == Decimal("100")

    def test_cancel_of_a_finished_activation_is_not_refundable(self, sim, client):
        lease = client.acquire("tg", "0", None)
        sim.deliver(lease.activation_id, "12")
        client.finish(lease)
        with pytest.raises(NotRefundable):
            client.cancel(lease)
        client.finish(lease)  # finishing again is done
        assert sim.ledger().settled and len(sim.ledger().finishes) == 1 and sim.ledger().refunds == []

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
