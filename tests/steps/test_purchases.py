"""decide_unknown (the adoption rule for a purchase whose outcome is unknown) as tables: no Docker,
no database, no Prefect. Each boundary is checked on both sides."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from providers.base import Lease, OpenActivation
from provisioner.steps.purchases import (
    CLOCK_SKEW,
    Resolution,
    UnknownPurchase,
    backoff,
    decide_retry,
    decide_unknown,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)  # the purchase call started
T1 = T0 + timedelta(seconds=3)  # and ended
TICK = timedelta(microseconds=1)


def listed(
    activation_id: str = "a1",
    *,
    bought_at: datetime | None = T0,
    service: str = "tg",
    country: str = "0",
    phone: str = "+70000000001",
) -> OpenActivation:
    lease = Lease("sms_activate", activation_id, phone, Decimal("10.5"), "RUB", bought_at or T0)
    return OpenActivation(lease, service, country, bought_at)


def unknown(*activations: OpenActivation, **fields) -> UnknownPurchase:
    base = UnknownPurchase(
        provider="sms_activate",
        service="tg",
        country="0",
        requested_at=T0,
        call_ended_at=T1,
        known=frozenset(),
        others=(),
        listed=activations,
    )
    return replace(base, **fields)


class TestAdopt:
    def test_the_one_open_activation_of_its_kind_in_the_window_is_adopted(self):
        activation = listed()
        decision = decide_unknown(unknown(activation))
        assert decision.resolution == Resolution.ADOPTED and decision.adopt is activation
        assert decision.detail == "adopted activation a1"
        assert decision.status == "adopted activation a1 found at sms_activate"

    @pytest.mark.parametrize(
        ("bought_at", "inside"),
        [
            (T0 - CLOCK_SKEW, True),
            (T0 - CLOCK_SKEW - TICK, False),
            (T1 + CLOCK_SKEW, True),
            (T1 + CLOCK_SKEW + TICK, False),
        ],
    )
    def test_window_is_the_call_widened_by_the_clock_skew(self, bought_at, inside):
        decision = decide_unknown(unknown(listed(bought_at=bought_at)))
        # Outside the window it is still an unexplained activation of its kind: never "none sold".
        assert decision.resolution == (Resolution.ADOPTED if inside else Resolution.UNDECIDED)
        if not inside:
            assert "none inside the call's window" in decision.detail

    def test_a_list_without_purchase_times_cannot_exclude_an_activation(self):
        decision = decide_unknown(unknown(listed(bought_at=None)))
        assert decision.resolution == Resolution.ADOPTED

    def test_an_activation_without_a_number_yet_is_not_adopted(self):
        decision = decide_unknown(unknown(listed(phone="")))
        assert decision.resolution == Resolution.UNDECIDED and decision.adopt is None
        assert decision.detail == "activation a1 has no number yet"


class TestNotOurs:
    def test_an_activation_known_to_another_lease_is_not_ours(self):
        decision = decide_unknown(unknown(listed("a1"), known=frozenset({"a1"})))
        assert decision.resolution == Resolution.NONE_SOLD and decision.adopt is None

    @pytest.mark.parametrize("kind", [{"service": "wa"}, {"country": "7"}])
    def test_an_activation_of_another_kind_is_not_ours(self, kind):
        decision = decide_unknown(unknown(listed(**kind)))
        assert decision.resolution == Resolution.NONE_SOLD

    def test_nothing_open_means_nothing_was_sold(self):
        decision = decide_unknown(unknown())
        assert decision.resolution == Resolution.NONE_SOLD
        assert decision.detail == "no open tg/0 activation at sms_activate: nothing was sold"
        assert decision.status == "no purchase found at sms_activate: nothing was sold"


class TestNeverGuess:
    def test_two_candidates_are_never_guessed_between(self):
        decision = decide_unknown(unknown(listed("a1"), listed("a2")))
        assert decision.resolution == Resolution.UNDECIDED and decision.adopt is None
        assert decision.detail.startswith("2 unknown open activation(s)")

    @pytest.mark.parametrize(
        ("start", "end", "rival"),
        [
            # Another unsettled call ending exactly 2 skews before ours starts still overlaps ...
            (T0 - timedelta(minutes=10), T0 - 2 * CLOCK_SKEW, True),
            # ... a tick earlier it cannot have bought an activation of our window.
            (T0 - timedelta(minutes=10), T0 - 2 * CLOCK_SKEW - TICK, False),
            (T1 + 2 * CLOCK_SKEW, T1 + timedelta(minutes=10), True),
            (T1 + 2 * CLOCK_SKEW + TICK, T1 + timedelta(minutes=10), False),
        ],
    )
    def test_another_unsettled_purchase_overlapping_the_call_blocks_adoption(self, start, end, rival):
        decision = decide_unknown(unknown(listed(), others=((start, end),)))
        assert decision.resolution == (Resolution.UNDECIDED if rival else Resolution.ADOPTED)

    def test_without_purchase_times_any_other_unsettled_purchase_blocks_adoption(self):
        far = (T0 - timedelta(days=1), T0 - timedelta(days=1))
        decision = decide_unknown(unknown(listed(bought_at=None), others=(far,)))
        assert decision.resolution == Resolution.UNDECIDED
        assert decision.detail.endswith("1 other unsettled purchase(s)")


class TestCannotLook:
    def test_a_provider_that_cannot_list_flags_the_lease_for_a_person(self):
        decision = decide_unknown(unknown(listed(), cannot_list=True))
        assert decision.resolution == Resolution.CANNOT_LIST and decision.adopt is None
        assert decision.attention == decision.detail
        assert "bought around 2025-01-01 12:00:00 UTC" in decision.detail

    def test_a_failed_lookup_is_undecided_without_a_flag(self):
        decision = decide_unknown(unknown(listed(), lookup_failed="HTTP 502"))
        assert decision.resolution == Resolution.UNDECIDED and decision.attention is None
        assert decision.detail == "lookup failed: HTTP 502"


class TestRetry:
    @pytest.mark.parametrize(
        ("retries", "count", "expected"),
        [
            (3, True, (4, False)),
            (4, True, (5, True)),
            (4, False, (4, False)),  # an immediate lookup is not counted
            (5, False, (5, True)),
        ],
    )
    def test_gives_up_at_the_limit_of_counted_lookups(self, retries, count, expected):
        assert decide_retry(retries, count=count, limit=5) == expected

    @pytest.mark.parametrize(("retries", "seconds"), [(0, 30), (1, 60), (2, 120), (3, 200), (9, 200)])
    def test_backoff_doubles_up_to_its_cap(self, retries, seconds):
        assert backoff(retries, base_s=30, max_s=200) == timedelta(seconds=seconds)
