"""One state machine declared as data: which states may follow each state, and one check.

Sessions (store.states), devices (store.device_states), hosts (store.host_states) and number
leases (store.lease_states) each declare a StateTable once; a change the table does not allow raises
that machine's subclass of IllegalChange, naming the thing, both states and what is allowed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

S = TypeVar("S", bound=enum.StrEnum)


class IllegalChange(Exception):
    """A change of state the machine's table does not allow. ``key``: the thing's id or name."""

    def __init__(
        self, message: str, *, key: str | int, from_state: enum.StrEnum, to_state: enum.StrEnum
    ) -> None:
        super().__init__(message)
        self.key = key
        self.from_state = from_state
        self.to_state = to_state


@dataclass(frozen=True)
class StateTable(Generic[S]):
    """``allowed``: each state -> the states that may follow it (every state has a row); a state
    with none is terminal. ``subject`` and ``change`` word the error ("session", "transition")."""

    subject: str
    allowed: Mapping[S, frozenset[S]]
    error: type[IllegalChange]
    change: str = "transition"
    ended: str = "terminal"  # what a state without exits is called in the error
    terminal: frozenset[S] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "terminal", frozenset(s for s, targets in self.allowed.items() if not targets)
        )

    def check(self, key: str | int, from_state: S, to_state: S) -> None:
        """Raise the machine's IllegalChange unless ``from_state -> to_state`` is in the table."""
        if to_state in self.allowed[from_state]:
            return
        allowed = ", ".join(sorted(self.allowed[from_state])) or f"none: it is {self.ended}"
        raise self.error(
            f"{self.subject} {key}: illegal {self.change} {from_state} -> {to_state} "
            f"(allowed from {from_state}: {allowed})",
            key=key,
            from_state=from_state,
            to_state=to_state,
        )
