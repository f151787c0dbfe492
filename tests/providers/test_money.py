"""What the clients say about money, against the simulator's money modes: the charged amount and
where it came from, the account's currency where the protocol names it, and purchases that no cap
would bound."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.errors import UnavailableError
from tests.providers.specs import KEY, SPECS


@pytest.mark.parametrize(
    ("name", "currency"), [("sms_man", "RUB"), ("onlinesim", "EUR"), ("sms_activate", None)]
)
def test_the_account_currency_where_the_balance_reply_names_it(sim, make_provider, name, currency) -> None:
    sim.configure(account_currency={KEY: "RUB" if name != "onlinesim" else "EUR"})
    account = make_provider(name).account()
    assert account.balance == Decimal("100") and account.currency == currency  # getBalance names none


@pytest.mark.parametrize("name", ["sms_man", "onlinesim", "sms_activate"])
def test_an_account_without_a_named_currency_reads_none(sim, make_provider, name) -> None:
    assert make_provider(name).account().currency is None


def test_get_number_v2_names_the_account_currency(sim, make_provider) -> None:
    sim.configure(dialect="status-codes", account_currency={KEY: "USD"})
    lease = make_provider("sms_activate").acquire("tg", "0", None)
    assert (lease.currency, lease.price_source) == ("USD", "reply")


class TestCharged:
    def test_the_reply_names_what_was_charged_above_the_quote(self, sim, make_provider) -> None:
        sim.configure(dialect="status-codes", overcharge=Decimal(2), overcharge_times=1)
        sim.set_offer("tg", "0", "0.30", 5, protocol="sms_activate")
        client = make_provider("sms_activate")
        first, second = client.acquire("tg", "0", Decimal("0.50")), client.acquire("tg", "0", Decimal("0.50"))
        assert (first.price, first.price_source) == (Decimal("0.60"), "reply")  # quoted 0.30
        assert second.price == Decimal("0.30")
        assert [e.amount for e in sim.ledger().purchases] == [Decimal("0.60"), Decimal("0.30")]

    @pytest.mark.parametrize(
        ("max_price", "charged"),
        [(None, "0.80"), ("0.50", "0.30"), ("0.80", "0.80")],
        ids=["uncapped", "capped", "at-dear"],
    )
    def test_dearer_numbers_are_sold_first_unless_max_price_forbids(
        self, sim, make_provider, max_price, charged
    ) -> None:
        sim.configure(dialect="status-codes")
        sim.set_offer("tg", "0", "0.30", 5, protocol="sms_activate", dearer="0.80")
        cap = Decimal(max_price) if max_price else None
        lease = make_provider("sms_activate").acquire("tg", "0", cap)
        assert lease.price == Decimal(charged) == sim.ledger().purchases[0].amount

    @pytest.mark.parametrize("spec_id", ["sms_man", "onlinesim", "sms_activate"])
    def test_without_a_reply_amount_the_quote_is_recorded_as_such(self, sim, make_provider, spec_id) -> None:
        spec = SPECS[spec_id]
        lease = make_provider(spec.name).acquire(spec.service, spec.country, None)
        assert (lease.price, lease.price_source) == (Decimal("10.00"), "quote")


NO_OFFERS = '{"name": "Russia", "code": 7, "services": {}}'  # the list lacks the offer


class TestUnquoted:
    def test_onlinesim_without_a_quote_is_not_bought_under_a_cap(self, sim, make_provider) -> None:
        sim.inject("malformed", protocol="onlinesim", action="getNumbersStats", body=NO_OFFERS)
        client = make_provider("onlinesim")
        with pytest.raises(UnavailableError, match="cannot enforce the cap") as caught:
            client.acquire("telegram", "7", Decimal("0.50"))
        assert caught.value.code == "unquoted" and sim.purchases == 0

    def test_allowed_it_buys_and_records_the_cap_as_the_price(self, sim, provider_settings) -> None:
        from providers import build_provider

        sim.set_offer("telegram", "7", "0.40", 5, protocol="onlinesim")
        client = build_provider("onlinesim", provider_settings("onlinesim"), allow_unquoted=True)
        try:
            sim.inject("malformed", protocol="onlinesim", action="getNumbersStats", body=NO_OFFERS)
            lease = client.acquire("telegram", "7", Decimal("0.50"))
        finally:
            client.close()
        assert (lease.price, lease.price_source) == (Decimal("0.50"), "cap") and sim.purchases == 1

    def test_sms_activate_enforces_max_price_itself_and_buys_without_a_quote(
        self, sim, make_provider
    ) -> None:
        sim.set_offer("tg", "0", "0.30", 5, protocol="sms_activate")
        sim.inject("malformed", protocol="sms_activate", action="getPrices", body="{}")
        lease = make_provider("sms_activate").acquire("tg", "0", Decimal("0.50"))
        assert (lease.price, lease.price_source) == (Decimal("0.50"), "cap")  # the most it can have cost
        assert [p["maxPrice"] for p in sim.requests("sms_activate", "getNumber")] == ["0.50"]
