import pytest

from store.states import ALLOWED, LIVE, PROVISIONING, TERMINAL, IllegalTransition, State, check_transition


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
