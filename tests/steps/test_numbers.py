"""The number-renting decisions as tables (which provider is skipped, when to stop, fall back, what
is recorded): no Docker, no database, no Prefect."""

from __future__ import annotations

import pytest

from providers.errors import (
    MalformedReply,
    NotSupported,
    PurchaseUnknown,
    StopError,
    TransientError,
    UnavailableError,
)
from provisioner.steps.numbers import (
    NoNumberAvailable,
    Tried,
    decide_lost,
    decide_none_rented,
    decide_refused,
    decide_rented_event,
    decide_resume,
    decide_skip,
)
from provisioner.steps.purchases import Resolution, Resolved
from provisioner.store import LeaseOutcome, LeaseRow, State

ALL_OUTCOMES = list(LeaseOutcome)


def lease(
    attempt: int, outcome: LeaseOutcome, activation_id: str | None = "a1", lease_id: int = 1
) -> LeaseRow:
    return LeaseRow(id=lease_id, attempt=attempt, outcome=outcome.value, activation_id=activation_id)


def err(cls, message: str = "no", **extra):
    return cls(message, provider="sms_man", action="getNumber", **extra)


class TestResume:
    @pytest.mark.parametrize("outcome", ALL_OUTCOMES)
    def test_only_a_number_that_can_still_get_its_code_is_resumed(self, outcome):
        row = lease(2, outcome)
        resumable = outcome in (LeaseOutcome.ACTIVE, LeaseOutcome.CODE_RECEIVED)
        assert decide_resume([row], 2) is (row if resumable else None)

    def test_a_number_of_another_attempt_is_not_resumed(self):
        assert decide_resume([lease(1, LeaseOutcome.ACTIVE)], 2) is None

    def test_a_purchase_without_an_activation_is_not_resumed(self):
        assert decide_resume([lease(2, LeaseOutcome.ACTIVE, activation_id=None)], 2) is None

    def test_the_first_resumable_lease_of_the_attempt_is_taken(self):
        first, second = lease(2, LeaseOutcome.ACTIVE, "a1", 1), lease(2, LeaseOutcome.ACTIVE, "a2", 2)
        assert decide_resume([lease(2, LeaseOutcome.FAILED, None, 0), first, second], 2) is first


class TestSkip:
    def test_a_configured_provider_without_an_unsettled_purchase_is_tried(self):
        assert decide_skip("sms_man", configured=True, unsettled={"onlinesim": 4}) is None

    def test_an_unconfigured_provider_is_skipped(self):
        assert decide_skip("sms_man", configured=False, unsettled={}) == "not configured"

    def test_never_buy_again_where_a_purchase_of_the_session_may_have_gone_through(self):
        reason = decide_skip("sms_man", configured=True, unsettled={"sms_man": 7})
        assert reason == "the outcome of purchase (lease 7) is still unknown"


class TestRefused:
    def test_unavailable_falls_back_to_the_next_provider_without_a_retry(self):
        assert decide_refused("sms_man", err(UnavailableError, "no numbers")) == Tried(
            "sms_man", "no numbers"
        )

    def test_transient_falls_back_and_is_remembered_for_a_retry_of_the_list(self):
        exc = err(TransientError, "429")
        assert decide_refused("sms_man", exc) == Tried("sms_man", "429", exc)

    @pytest.mark.parametrize(
        "exc",
        [err(StopError, "bad key"), err(NotSupported), err(MalformedReply, body="<html>")],
    )
    def test_any_other_provider_error_stops(self, exc):
        assert decide_refused("sms_man", exc) is None


class TestLost:
    EXC = err(PurchaseUnknown, "timed out")

    def test_an_adopted_purchase_is_the_number(self):
        assert decide_lost("sms_man", self.EXC, Resolved(Resolution.ADOPTED, "adopted activation 9")) is None

    def test_none_sold_falls_back_as_a_transient_failure(self):
        tried = decide_lost("sms_man", self.EXC, Resolved(Resolution.NONE_SOLD, "nothing was sold"))
        assert tried is not None and tried.reason == "timed out; nothing was sold"
        assert isinstance(tried.transient, TransientError) and not isinstance(
            tried.transient, PurchaseUnknown
        )
        assert (tried.transient.provider, tried.transient.action) == ("sms_man", "getNumber")

    @pytest.mark.parametrize("resolution", [Resolution.UNDECIDED, Resolution.CANNOT_LIST, Resolution.GAVE_UP])
    def test_an_unsettled_purchase_falls_back_without_a_retry(self, resolution):
        # A retry of the list would skip this provider anyway: its purchase may have gone through.
        tried = decide_lost("sms_man", self.EXC, Resolved(resolution, "2 unknown"))
        assert tried == Tried("sms_man", "timed out; 2 unknown", None)


class TestNoneRented:
    def test_the_first_transient_failure_is_raised_for_a_retry(self):
        first, second = err(TransientError, "429"), err(TransientError, "503")
        tried = [Tried("a", "not configured"), Tried("b", "429", first), Tried("c", "503", second)]
        assert decide_none_rented(tried) is first

    def test_without_a_transient_failure_every_reason_is_reported(self):
        exc = decide_none_rented([Tried("a", "not configured"), Tried("b", "no numbers")])
        assert isinstance(exc, NoNumberAvailable)
        assert exc.reasons == {"a": "not configured", "b": "no numbers"}
        assert str(exc) == "no provider could rent a number (a: not configured; b: no numbers)"

    def test_an_empty_list_says_so(self):
        assert str(decide_none_rented([])) == "no provider could rent a number (no providers given)"


class TestRentedEvent:
    def test_the_first_number_moves_the_session_to_number_acquired(self):
        assert decide_rented_event(State.REQUESTED, "sms_man", 1) == (
            State.NUMBER_ACQUIRED,
            "rented from sms_man",
        )

    @pytest.mark.parametrize("state", [s for s in State if s != State.REQUESTED])
    def test_a_later_number_is_only_an_event(self, state):
        assert decide_rented_event(state, "sms_man", 3) == (None, "attempt 3: new number from sms_man")
