"""plan(observed, policy) -> actions: the reconciliation policy as ordered lists of small named
rules (reconciler.rules), pure and deterministic, no I/O.

Each item observed (a session, a stray flow run, a device, a container, a pair network, the
egress rules of a network that is gone, an open lease) goes through its kind's rules in order; the first rule whose Verdict is final decides it.
Items are taken in the order they were observed, kinds in the order below; the lease rules come
last because they read which sessions this pass ends. To change a rule, change its function; to
add one, write it in reconciler/rules/ and put it in its list at the place its priority says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from provisioner.reconciler.model import ENDS_SESSION, Action, Context, Observed, Policy, Verdict
from provisioner.reconciler.rules import devices, egress, leases, runs, sessions

__all__ = ["Policy", "plan"]

Rule = Callable[[Any, Context], Verdict | None]

SESSION_RULES: tuple[Rule, ...] = (
    runs.dead_provision,
    sessions.ttl_passed,
    sessions.idle_too_long,
    sessions.release_stalled,
    sessions.not_live,
    sessions.host_down,
    sessions.device_ended,
    sessions.session_device_down,
    sessions.stream_broken,
)
STRAY_RUN_RULES: tuple[Rule, ...] = (runs.stray_run,)
DEVICE_RULES: tuple[Rule, ...] = (
    devices.device_on_down_host,
    devices.device_on_late_host,
    devices.claimed_device_unheld,
    devices.idle_device_down,
)
CONTAINER_RULES: tuple[Rule, ...] = (devices.unowned_container,)
NETWORK_RULES: tuple[Rule, ...] = (devices.unused_network, egress.unguarded_network)
STRAY_GUARD_RULES: tuple[Rule, ...] = (egress.stray_guard,)
LEASE_RULES: tuple[Rule, ...] = (
    leases.session_ending,
    leases.purchase_unknown,
    leases.cancel_refused,
    leases.session_open,
    leases.purchase_left_pending,
    leases.session_ended,
)


def apply(rules: Sequence[Rule], items: Iterable[Any], ctx: Context) -> list[Action]:
    """Each item through the rules in order, until a rule's verdict is final."""
    actions: list[Action] = []
    for item in items:
        for rule in rules:
            verdict = rule(item, ctx)
            if verdict is None:
                continue
            actions.extend(verdict.actions)
            if verdict.final:
                break
    return actions


def plan(observed: Observed, policy: Policy) -> list[Action]:
    """Every action that brings Docker and the providers in line with the database (or the
    database in line with what no longer exists). Deterministic for a given observation."""
    ctx = Context.of(observed, policy)
    actions = apply(SESSION_RULES, observed.sessions, ctx)
    actions += apply(STRAY_RUN_RULES, observed.stray_runs, ctx)
    actions += apply(DEVICE_RULES, observed.devices, ctx)
    actions += apply(CONTAINER_RULES, observed.containers, ctx)
    actions += apply(NETWORK_RULES, observed.networks, ctx)
    actions += apply(STRAY_GUARD_RULES, observed.stray_guards, ctx)
    ending = frozenset(a.session_id for a in actions if a.kind in ENDS_SESSION and a.session_id)
    actions += apply(LEASE_RULES, observed.leases, replace(ctx, ending=ending))
    return actions
