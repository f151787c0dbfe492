"""Behaviour every provider client shares, run against the simulator over loopback HTTP in every
dialect it speaks; the ledger says what was charged and refunded."""

from __future__ import annotations

import logging
import socket
from datetime import UTC
from decimal import Decimal

import pytest

from providers import CodeReceived, Provider, Waiting, build_provider
from providers.base import Cancelled
from providers.errors import (
    CancelTooEarly,
    MalformedReply,
    NotRefundable,
    NotSupported,
    ProviderError,
    PurchaseUnknown,
    StopError,
    TransientError,
    UnavailableError,
    is_retryable,
)
from provisioner.settings.model import ProviderSettings
from tests.providers.specs import KEY, Spec


def buy(provider: Provider, spec: Spec, max_price: Decimal | None = None):
    return provider.acquire(spec.service, spec.country, max_price)


class TestHappyPath:
    def test_satisfies_the_protocol(self, provider):
        assert isinstance(provider, Provider)
        assert KEY not in repr(provider)

    def test_balance_and_price(self, sim, provider, spec):
        sim.set_offer(spec.service, spec.country, "12.50", 7)
        assert provider.balance() == Decimal("100")
        info = provider.price(spec.service, spec.country)
        assert info.price == Decimal("12.50")
        # a price map also lists a dearer level; a service-first price list has no count
        expected = {"price-map": 10, "service-prices": None}.get(spec.dialect, 7)
        assert info.available == expected

    def test_buy_wait_code_finish_records_the_charge(self, sim, provider, spec):
        lease = buy(provider, spec, Decimal("50"))
        assert lease.provider == spec.name and lease.phone.startswith("+") and lease.phone[1:].isdigit()
        [purchase] = sim.ledger().purchases
        assert lease.price == purchase.amount == spec.charged and lease.currency == spec.currency
        assert lease.bought_at.tzinfo is UTC
        assert isinstance(provider.check(lease), Waiting)
        sim.deliver(lease.activation_id, "482913")
        assert provider.check(lease) == CodeReceived(code="482913", text="482913")
        provider.finish(lease)
        ledger = sim.ledger()
        assert [e.activation_id for e in ledger.finishes] == [lease.activation_id]
        assert ledger.settled and ledger.refunds == []
        assert provider.balance() == Decimal("100") - spec.charged

    def test_sms_after_configured_delay(self, sim, provider, spec):
        sim.set_sms_delay(30)
        lease = buy(provider, spec)
        assert isinstance(provider.check(lease), Waiting)
        sim.advance(31)
        assert isinstance(provider.check(lease), CodeReceived)


class TestCancel:
    def test_cancel_refunds_and_is_idempotent(self, sim, provider, spec):
        lease = buy(provider, spec)
        provider.cancel(lease)
        provider.cancel(lease)
        assert isinstance(provider.check(lease), Cancelled)
        ledger = sim.ledger()
        assert [e.activation_id for e in ledger.refunds] == [lease.activation_id]
        assert ledger.settled and provider.balance() == Decimal("100")

    def test_cancel_after_code_is_not_refundable_and_finishes(self, sim, provider, spec):
        lease = buy(provider, spec)
        sim.deliver(lease.activation_id, "1111")
        with pytest.raises(NotRefundable) as caught:
            provider.cancel(lease)
        assert not is_retryable(caught.value)
        assert sim.ledger().refunds == [] and sim.ledger().open == [lease.activation_id]
        provider.finish(lease)
        ledger = sim.ledger()
        assert ledger.open == [] and len(ledger.finishes) == 1 and ledger.refunds == [] and ledger.settled
        assert provider.balance() == Decimal("100") - spec.charged

    def test_early_cancel_then_later_cancel(self, sim, provider, spec):
        if not spec.early_cancel:
            pytest.skip(f"{spec.name} has no minimum time before cancel")
        sim.configure(min_cancel_s=120)
        lease = buy(provider, spec)
        with pytest.raises(CancelTooEarly) as caught:
            provider.cancel(lease)
        assert 0 < caught.value.retry_after_s <= 120 and not is_retryable(caught.value)
        assert sim.ledger().open == [lease.activation_id]
        sim.advance(121)
        provider.cancel(lease)
        assert sim.ledger().settled and provider.balance() == Decimal("100")

    def test_expiry_refunds(self, sim, provider, spec):
        lease = buy(provider, spec)
        sim.advance(sim.state.config.lifetime_s + 1)
        assert type(provider.check(lease)) is spec.after_expiry
        provider.cancel(lease)  # already over: counts as done
        ledger = sim.ledger()
        assert ledger.settled and len(ledger.refunds) == 1 and provider.balance() == Decimal("100")


class TestUnavailable:
    def test_price_above_max_buys_nothing(self, sim, provider, spec):
        with pytest.raises(UnavailableError):
            buy(provider, spec, Decimal("9.99"))
        assert sim.purchases == 0

    def test_sold_out(self, sim, provider, spec):
        sim.set_offer(spec.service, spec.country, "10", 0)
        with pytest.raises(UnavailableError):
            buy(provider, spec)
        assert sim.purchases == 0

    def test_no_numbers_reply(self, sim, provider, spec):
        sim.inject("no_numbers", protocol=spec.name, action=spec.buy_action)
        with pytest.raises(UnavailableError) as caught:
            buy(provider, spec)
        assert not is_retryable(caught.value)


class TestStop:
    def test_bad_key_names_the_setting(self, make_provider, spec):
        provider = make_provider(spec.name, api_key="wrong-key-7781")
        with pytest.raises(StopError) as caught:
            provider.balance()
        message = str(caught.value)
        assert f"PROVISIONER_PROVIDERS__{spec.name.upper()}__API_KEY" in message
        assert spec.name in message and "wrong-key-7781" not in message

    def test_unknown_service(self, sim, provider, spec):
        with pytest.raises(StopError):
            provider.acquire("no-such-service", spec.country, None)
        assert sim.purchases == 0

    def test_no_balance(self, sim, provider, spec):
        sim.set_offer(spec.service, spec.country, "150", 5)
        with pytest.raises(StopError):
            buy(provider, spec)

    def test_missing_key(self, sim, spec):
        with pytest.raises(StopError, match="API_KEY"):
            build_provider(spec.name, ProviderSettings(base_url=sim.base_urls[spec.name]))


class TestTransient:
    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_server_errors(self, sim, provider, spec, status):
        sim.inject("http", status=status, protocol=spec.name)
        with pytest.raises(TransientError) as caught:
            provider.balance()
        assert is_retryable(caught.value) and caught.value.provider == spec.name

    def test_rate_limit(self, sim, provider, spec):
        sim.inject("rate_limit", protocol=spec.name)
        with pytest.raises(TransientError):
            provider.balance()

    def test_slow_reply_times_out(self, sim, make_provider, spec):
        provider = make_provider(spec.name, timeout_s=0.3)
        sim.inject("slow", delay_s=0.8, protocol=spec.name, action=spec.balance_action)
        with pytest.raises(TransientError, match="no reply within"):
            provider.balance()

    def test_connection_refused(self, spec):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        settings = ProviderSettings(api_key=KEY, base_url=f"http://127.0.0.1:{port}/x/", timeout_s=1)
        provider = build_provider(spec.name, settings)
        try:
            with pytest.raises(TransientError):
                provider.balance()
        finally:
            provider.close()

    def test_fail_the_nth_call_only(self, sim, provider, spec):
        lease = buy(provider, spec)
        sim.inject("http", status=500, protocol=spec.name, action=spec.check_action, nth=2)
        assert isinstance(provider.check(lease), Waiting)
        with pytest.raises(TransientError):
            provider.check(lease)
        assert isinstance(provider.check(lease), Waiting)

    @pytest.mark.parametrize(
        "fault",
        [
            {"kind": "http", "status": 502},
            {"kind": "http", "status": 500},
            {"kind": "malformed"},
            {"kind": "slow", "delay_s": 3.0},  # past the client's 2 s timeout
        ],
        ids=["502", "500", "garbage", "stall"],
    )
    def test_sold_then_unclear_reply_is_purchase_unknown_and_listed(self, sim, provider, spec, fault):
        sim.inject(protocol=spec.name, action=spec.buy_action, execute=True, **fault)
        with pytest.raises(PurchaseUnknown) as caught:
            buy(provider, spec)
        assert not is_retryable(caught.value)
        ledger = sim.ledger()
        assert len(ledger.open) == 1
        if not spec.lists_open:
            with pytest.raises(NotSupported):
                provider.list_open_activations()
            return
        [found] = provider.list_open_activations()
        assert found.lease.activation_id == ledger.open[0]
        assert (found.service, found.country) == (spec.service, spec.country)
        assert found.lease.phone.startswith("+") and found.lease.price == spec.charged

    def test_refused_purchase_is_not_unknown(self, sim, provider, spec):
        sim.inject("rate_limit", protocol=spec.name, action=spec.buy_action)
        with pytest.raises(TransientError) as caught:
            buy(provider, spec)
        assert not isinstance(caught.value, PurchaseUnknown) and sim.purchases == 0


class TestMalformed:
    def test_html_instead_of_a_reply(self, sim, provider, spec):
        sim.inject("malformed", protocol=spec.name, body="<html>maintenance " + "x" * 400 + "</html>")
        with pytest.raises(MalformedReply) as caught:
            provider.balance()
        message = str(caught.value)
        assert spec.name in message and "maintenance" in message and len(message) < 400
        assert caught.value.action == spec.balance_action and not is_retryable(caught.value)


class TestAnotherCode:
    def test_request_another_code(self, sim, provider, spec):
        lease = buy(provider, spec)
        sim.deliver(lease.activation_id, "1111")
        if not spec.another_code:
            with pytest.raises(NotSupported):
                provider.request_another_code(lease)
            return
        provider.request_another_code(lease)
        assert isinstance(provider.check(lease), Waiting)
        sim.deliver(lease.activation_id, "2222")
        assert provider.check(lease).code == "2222"


class TestSecrets:
    def test_key_never_in_logs_errors_or_reprs(self, sim, make_provider, spec, caplog):
        caplog.set_level(logging.DEBUG)
        provider = make_provider(spec.name)
        seen: list[str] = [repr(provider)]
        lease = buy(provider, spec)
        seen += [repr(lease), repr(provider.check(lease))]
        faults = [("http", {"status": 500}), ("malformed", {"body": f"echo {KEY}"}), ("error", {"code": "X"})]
        for kind, options in faults:
            sim.inject(kind, protocol=spec.name, **options)
            with pytest.raises(ProviderError) as caught:
                provider.balance()
            seen += [str(caught.value), repr(caught.value), repr(caught.value.args)]
        sim.inject("slow", delay_s=3, protocol=spec.name)
        with pytest.raises(TransientError) as caught:
            make_provider(spec.name, timeout_s=0.2).balance()
        seen.append(str(caught.value))
        with pytest.raises(StopError) as caught:
            make_provider(spec.name, api_key=KEY + "-bad").balance()
        seen.append(str(caught.value))
        assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx did log
        for text in [*seen, caplog.text, *(r.getMessage() for r in caplog.records)]:
            assert KEY not in text
