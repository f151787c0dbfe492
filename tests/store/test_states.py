import pytest

from provisioner.store.lease_states import (
    CLOSED_LEASE_OUTCOMES,
    LEASE_ALLOWED,
    OPEN_LEASE_OUTCOMES,
    IllegalLeaseTransition,
    LeaseOutcome,
    check_lease_transition,
)
from provisioner.store.states import (
    ALLOWED,
    LIVE,
    PROVISIONING,
    TERMINAL,
    IllegalTransition,
    State,
    check_transition,
)


class TestStateTable:
    def test_every_state_has_a_row(self):
        assert set(ALLOWED) == set(State)

    def test_terminal_states_are_exactly_the_ones_without_exits(self):
        assert TERMINAL == {State.RELEASED, State.EXPIRED, State.FAILED, State.CANCELLED, State.ORPHANED}

    def test_every_non_terminal_state_can_fail_or_reach_an_end(self):
        for state in set(State) - TERMINAL:
            assert State.FAILED in ALLOWED[state], state

    def test_happy_path_is_allowed(self):
        path = [
            State.REQUESTED,
            State.NUMBER_ACQUIRED,
            State.LAUNCHING,
            State.AWAITING_CODE,
            State.VERIFIED,
            State.RELEASING,
            State.RELEASED,
        ]
        for a, b in zip(path, path[1:], strict=False):
            check_transition("s", a, b)

    def test_illegal_transition_names_both_states(self):
        with pytest.raises(IllegalTransition) as info:
            check_transition("abc", State.RELEASED, State.AWAITING_CODE)
        message = str(info.value)
        assert "released -> awaiting_code" in message and "abc" in message and "terminal" in message
        assert info.value.from_state is State.RELEASED and info.value.to_state is State.AWAITING_CODE

    def test_live_and_provisioning_are_not_terminal(self):
        assert not (LIVE | PROVISIONING) & TERMINAL


def test_device_first_paths_are_allowed():
    warm = [State.REQUESTED, State.AWAITING_NUMBER, State.AWAITING_CODE, State.VERIFIED]
    cold = [State.REQUESTED, State.LAUNCHING, State.AWAITING_NUMBER, State.AWAITING_CODE]
    for path in (warm, cold):
        for a, b in zip(path, path[1:], strict=False):
            check_transition("s", a, b)


class TestLeaseOutcomeTable:
    def test_every_outcome_has_a_row(self):
        assert set(LEASE_ALLOWED) == set(LeaseOutcome)

    def test_closed_outcomes_are_exactly_the_ones_without_exits(self):
        assert CLOSED_LEASE_OUTCOMES == {
            LeaseOutcome.FINISHED,
            LeaseOutcome.CANCELLED,
            LeaseOutcome.EXPIRED,
            LeaseOutcome.FAILED,
        }

    @pytest.mark.parametrize(
        "path",
        [
            ["pending", "active", "code_received", "finished"],
            ["pending", "active", "cancel_pending", "cancel_pending", "cancelled"],
            ["pending", "active", "cancel_pending", "finished"],  # a close that ended as a finish
            ["pending", "unknown", "unknown", "active", "cancelled"],  # adopted
            ["pending", "unknown", "failed"],  # none was sold
            ["pending", "unknown", "needs_attention"],
            ["pending", "active", "cancel_pending", "needs_attention"],
        ],
    )
    def test_declared_paths_are_allowed(self, path):
        for a, b in zip(path, path[1:], strict=False):
            check_lease_transition(1, LeaseOutcome(a), LeaseOutcome(b))

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("finished", "cancelled"),
            ("cancelled", "finished"),
            ("failed", "active"),
            ("pending", "code_received"),
            ("pending", "cancelled"),
            ("code_received", "cancelled"),  # a number with its code is finished, never refunded
            ("unknown", "cancelled"),  # first adopted (active), then closed
        ],
    )
    def test_illegal_moves_raise_naming_both(self, a, b):
        with pytest.raises(IllegalLeaseTransition) as info:
            check_lease_transition(7, LeaseOutcome(a), LeaseOutcome(b))
        assert f"{a} -> {b}" in str(info.value) and "lease 7" in str(info.value)

    def test_open_outcomes_are_not_closed(self):
        assert not OPEN_LEASE_OUTCOMES & CLOSED_LEASE_OUTCOMES
        assert LeaseOutcome.NEEDS_ATTENTION not in OPEN_LEASE_OUTCOMES  # left to a person
