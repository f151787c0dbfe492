"""Money at the gateway: bounded requests, the price ceiling no request can raise."""

from __future__ import annotations

import logging

import pytest

from provisioner.gateway.app import create_app
from provisioner.steps.spend import NO_CEILING
from tests.harness.gateway import make_deps

pytestmark = pytest.mark.docker


class TestBoundedRequests:
    @pytest.mark.parametrize(
        ("body", "field", "words"),
        [
            ({"providers": ["sms_man", "onlinesim"] * 6}, "providers", "at most 10"),
            ({"providers": ["sms_man"] * 5000}, "providers", "at most 10"),
            ({"providers": ["sms_man", "onlinesim", "sms_man"]}, "providers", "each provider at most once"),
            ({"service": "t" * 65}, "service", "at most 64"),
            ({"country": "R" * 17}, "country", "at most 16"),
            ({"device_profile": "s" * 65}, "device_profile", "at most 64"),
            ({"max_price": "0.0000001 USD"}, "max_price", "at most 8 digits before the point and 4 after"),
            ({"max_price": "1" * 25 + " USD"}, "max_price", "fixed notation"),
            ({"max_price": "1e3 USD"}, "max_price", "fixed notation"),
            ({"max_price": "9" * 10_000}, "max_price", "needs an amount and a currency"),
        ],
        ids=[
            "11-providers",
            "5000-providers",
            "duplicate-provider",
            "long-service",
            "long-country",
            "long-profile",
            "seven-decimals",
            "25-digits",
            "exponent",
            "huge",
        ],
    )
    def test_every_bad_value_is_422_naming_its_field(self, gw, body, field, words) -> None:
        reply = gw.client.post("/sessions", json=body)
        assert reply.status_code == 422, reply.text
        [error] = reply.json()["errors"]
        assert error["loc"][0] == field and words in error["msg"], error
        assert len(reply.text) < 2000  # the input is never echoed back
        assert gw.runs.started == []


class TestCeiling:
    @pytest.fixture
    def capped(self, gateway_factory):
        return gateway_factory(spend={"max_price": "0.50 USD"}, fx={"RUB": "0.011"})

    @pytest.mark.parametrize("price", ["99 USD", "0.51 USD", "46 RUB"])
    def test_a_request_above_the_ceiling_is_422_naming_it(self, capped, price) -> None:
        reply = capped.client.post("/sessions", json={"max_price": price})
        assert reply.status_code == 422
        [error] = reply.json()["errors"]
        assert error["loc"] == ["max_price"]
        assert "above the ceiling 0.50 USD (PROVISIONER_SPEND__MAX_PRICE)" in error["msg"]
        assert capped.runs.started == []

    def test_a_currency_without_a_rate_cannot_be_compared_and_is_422(self, capped) -> None:
        reply = capped.client.post("/sessions", json={"max_price": "1 EUR"})
        assert reply.status_code == 422
        [error] = reply.json()["errors"]
        assert "cannot compare with the ceiling 0.50 USD" in error["msg"] and "EUR" in error["msg"]

    @pytest.mark.parametrize("price", ["0.50 USD", "0.20 USD", "45 RUB"])
    def test_at_or_below_the_ceiling_is_accepted(self, capped, price) -> None:
        reply = capped.client.post("/sessions", json={"max_price": price})
        assert reply.status_code == 202, reply.text

    def test_no_ceiling_is_warned_once_when_the_app_is_made(self, db_sessions, runtime, caplog) -> None:
        with caplog.at_level(logging.WARNING, logger="provisioner.gateway.app"):
            create_app(make_deps(db_sessions, runtime, token=None))
            create_app(make_deps(db_sessions, runtime, token=None, spend={"max_price": "1 USD"}))
        assert [r.getMessage() for r in caplog.records].count(NO_CEILING) == 1


def test_session_detail_shows_what_it_cost(gw, make_session) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from provisioner.store import LeaseOutcome
    from provisioner.store import leases as lease_repo

    sid = make_session()

    def bought(db, price: str, outcome: LeaseOutcome, source: str) -> None:
        row = lease_repo.record_lease_pending(
            db,
            sid,
            provider="sms_activate",
            service="tg",
            country="0",
            attempt=1,
            currency="USD",
            cap=Decimal("0.5"),
        )
        lease_repo.complete_lease(
            db,
            row.id,
            lease_repo.BoughtNumber(
                f"a{row.id}", "+79000000001", Decimal(price), "USD", datetime.now(UTC), source
            ),
        )
        lease_repo.set_lease_outcome(db, row.id, outcome)

    with gw.deps.sessions.begin() as db:
        bought(db, "0.60", LeaseOutcome.CANCELLED, "reply")  # refunded: costs nothing
        bought(db, "0.30", LeaseOutcome.FINISHED, "quote")
        lease_repo.record_lease_pending(
            db,
            sid,
            provider="sms_man",
            service="1",
            country="0",
            attempt=2,
            currency="RUB",
            cap=Decimal("40"),
        )  # a purchase not settled yet: its cap is reserved
    body = gw.client.get(f"/sessions/{sid}").json()
    assert body["cost"] == ["40.0000 RUB", "0.3000 USD"]
    assert [(n["price"], n["price_source"], n["cap"]) for n in body["numbers"]] == [
        ("0.6000", "reply", "0.5000"),
        ("0.3000", "quote", "0.5000"),
        (None, None, "40.0000"),
    ]
