"""The money decisions as tables: no database, no provider, no Prefect."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from provisioner.steps.spend import (
    AboveCeiling,
    BudgetState,
    Charge,
    crossed_low,
    day_window,
    decide_balance,
    decide_charge,
    decide_currency,
    decide_reservation,
    effective_cap,
)
from provisioner.values.money import Budget, Money, NoRate

FX = {"RUB": Decimal("0.011")}
M = Money.parse


class TestEffectiveCap:
    @pytest.mark.parametrize(
        ("ceiling", "requested", "default", "cap"),
        [
            (None, None, None, None),
            ("0.50 USD", None, None, "0.50 USD"),
            (None, "2 USD", None, "2 USD"),
            (None, None, "1 USD", "1 USD"),
            ("0.50 USD", "0.20 USD", None, "0.20 USD"),
            ("0.50 USD", "0.50 USD", None, "0.50 USD"),
            ("0.50 USD", None, "0.30 USD", "0.30 USD"),
            ("0.50 USD", None, "2 USD", "0.50 USD"),  # a default above the ceiling is lowered
            ("0.50 USD", "40 RUB", None, "40 RUB"),  # 0.44 USD: converted before comparing
            ("45 RUB", "0.40 USD", None, "0.40 USD"),  # 36.36 RUB
        ],
    )
    def test_the_lower_of_the_ceiling_and_the_request(self, ceiling, requested, default, cap) -> None:
        parse = lambda v: M(v) if v else None  # noqa: E731
        assert effective_cap(parse(ceiling), parse(requested), parse(default), FX) == parse(cap)

    @pytest.mark.parametrize("requested", ["0.51 USD", "99 USD", "46 RUB"])
    def test_a_request_above_the_ceiling_is_refused_naming_it(self, requested) -> None:
        with pytest.raises(AboveCeiling, match=r"above the ceiling 0\.50 USD"):
            effective_cap(M("0.50 USD"), M(requested), None, FX)

    def test_no_rate_means_no_comparison(self) -> None:
        with pytest.raises(NoRate):
            effective_cap(M("0.50 USD"), M("1 EUR"), None, FX)


def state(limit: str, spent: str, key: str = "*") -> BudgetState:
    return BudgetState(key, Budget.parse(limit), Decimal(spent), datetime(2026, 1, 2, tzinfo=UTC))


class TestReservation:
    @pytest.mark.parametrize(
        ("budgets", "cap", "refused_by"),
        [
            ([], "0.30 USD", None),
            ([("1.00 USD", "0")], "0.30 USD", None),
            ([("1.00 USD", "0.60")], "0.30 USD", None),
            ([("1.00 USD", "0.70")], "0.30 USD", None),  # exactly the budget
            ([("1.00 USD", "0.90")], "0.30 USD", "*"),
            ([("20 USD", "0"), ("1.00 USD/day", "0.90")], "0.30 USD", "*"),
            ([("1.00 USD", "0")], None, "*"),  # nothing bounds an uncapped purchase
            ([("100 RUB", "80")], "0.30 USD", "*"),  # 27.27 RUB
            ([("100 RUB", "70")], "0.30 USD", None),
            ([("1 EUR", "0")], "0.30 USD", "*"),  # no rate: cannot know it fits
        ],
    )
    def test_a_purchase_fits_every_budget_or_is_refused(self, budgets, cap, refused_by) -> None:
        states = [state(limit, spent) for limit, spent in budgets]
        refused = decide_reservation(states, M(cap) if cap else None, FX)
        assert (refused.key if refused else None) == refused_by

    def test_the_first_budget_overrun_is_named(self) -> None:
        states = [state("20 USD", "0", "*"), state("1 USD", "0.9", "acme")]
        assert decide_reservation(states, M("0.30 USD"), FX).key == "acme"
        assert state("1 USD", "1.3").remaining == 0


class TestCharge:
    @pytest.mark.parametrize(
        ("charged", "cap", "verdict"),
        [
            ("0.30 USD", None, Charge.WITHIN),
            ("0.30 USD", "0.50 USD", Charge.WITHIN),
            ("0.50 USD", "0.50 USD", Charge.WITHIN),
            ("0.51 USD", "0.50 USD", Charge.OVER),
            ("40 RUB", "0.50 USD", Charge.WITHIN),
            ("46 RUB", "0.50 USD", Charge.OVER),
            ("1 EUR", "0.50 USD", Charge.UNCOMPARABLE),
        ],
    )
    def test_a_charge_above_the_effective_cap_is_over(self, charged, cap, verdict) -> None:
        assert decide_charge(M(charged), M(cap) if cap else None, FX) == verdict


@pytest.mark.parametrize(
    ("configured", "reported", "stops"),
    [("RUB", None, False), ("RUB", "RUB", False), ("USD", "usd", False), ("RUB", "USD", True)],
)
def test_currency_mismatch_stops_purchases(configured, reported, stops) -> None:
    why = decide_currency("sms_activate", configured, reported)
    assert (why is not None) is stops
    if stops:
        assert "PROVISIONER_PROVIDERS__SMS_ACTIVATE__CURRENCY=USD" in why


@pytest.mark.parametrize(
    ("balance", "cap", "skip"),
    [(None, "1", False), ("5", None, False), ("5", "5", False), ("4.99", "5", True)],
)
def test_a_balance_below_the_cap_skips_the_provider(balance, cap, skip) -> None:
    dec = lambda v: Decimal(v) if v else None  # noqa: E731
    assert decide_balance(dec(balance), dec(cap)) is skip


@pytest.mark.parametrize(
    ("balance", "was_low", "result"),
    [
        ("10", False, (False, False)),
        ("4", False, (True, True)),
        ("3", True, (True, False)),
        ("6", True, (False, False)),
    ],
)
def test_the_low_balance_event_once_per_crossing(balance, was_low, result) -> None:
    assert crossed_low(Decimal(balance), Decimal(5), was_low) == result


@pytest.mark.parametrize(
    ("now", "zone", "start", "end"),
    [
        ("2026-03-10T23:30:00+00:00", "UTC", "2026-03-10T00:00:00+00:00", "2026-03-11T00:00:00+00:00"),
        (
            "2026-03-10T23:30:00+00:00",
            "Europe/Berlin",
            "2026-03-11T00:00:00+01:00",
            "2026-03-12T00:00:00+01:00",
        ),
        (
            "2026-03-29T12:00:00+00:00",
            "Europe/Berlin",
            "2026-03-29T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
        ),
    ],
)
def test_budget_days_are_calendar_days_in_the_zone(now, zone, start, end) -> None:
    got = day_window(datetime.fromisoformat(now), zone)
    assert got == (datetime.fromisoformat(start), datetime.fromisoformat(end))
