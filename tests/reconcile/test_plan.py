"""plan(observed, policy) as tables: every rule and its boundaries, no Docker, no database."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from provisioner.reconciler import Kind, Observed, plan
from provisioner.reconciler.model import (
    ContainerView,
    Reason,
    RunDetail,
    SessionView,
    StrayRun,
)
from provisioner.store import LeaseOutcome, State
from tests.reconcile.views import (
    DEADLINE,
    DEVICE_GRACE,
    GRACE,
    MIXED_WORLD_PLAN,
    NOW,
    PENDING_DEADLINE,
    POLICY,
    RUN,
    SID,
    STALE,
    START_DEADLINE,
    TICK,
    UNHEALTHY,
    both,
    container,
    device,
    lease,
    mixed_world,
    observed,
    session,
)


def kinds(actions) -> list[tuple[Kind, str | None]]:
    return [(a.kind, a.session_id) for a in actions]


class TestHealStream:
    """a. live session, device running, stream missing or stopped -> HEAL_STREAM."""

    @pytest.mark.parametrize("state", [State.AWAITING_CODE, State.VERIFIED])
    @pytest.mark.parametrize(
        ("stream", "reason"),
        [
            (None, Reason.STREAM_MISSING),
            ("exited", Reason.STREAM_STOPPED),
            ("created", Reason.STREAM_STOPPED),
            ("dead", Reason.STREAM_STOPPED),
        ],
    )
    def test_stream_missing_or_not_running(self, state, stream, reason):
        containers = [container("device")] + ([container("stream", stream)] if stream else [])
        actions = plan(observed([session(state)], containers), POLICY)
        assert kinds(actions) == [(Kind.HEAL_STREAM, SID)]
        assert actions[0].reason == reason

    @pytest.mark.parametrize("state", [State.AWAITING_CODE, State.VERIFIED])
    def test_both_running_needs_nothing(self, state):
        assert plan(observed([session(state)], both()), POLICY) == []

    def test_verified_session_whose_flow_completed_needs_nothing(self):
        """The provision flow ends when the session is verified; that is not a dead flow."""
        obs = observed(
            [session(State.VERIFIED, heartbeat_age=timedelta(days=1))], both(), runs={RUN: "COMPLETED"}
        )
        assert plan(obs, POLICY) == []


class TestOrphan:
    """b. live session whose device is missing or not running -> ORPHAN_SESSION (never a heal)."""

    @pytest.mark.parametrize("state", [State.AWAITING_CODE, State.VERIFIED])
    @pytest.mark.parametrize(
        ("containers", "condition"),
        [
            ([], "missing"),
            ([container("stream")], "missing"),
            ([container("device", "exited"), container("stream")], "exited"),
            ([container("device", "exited")], "exited"),
            ([container("device", "created"), container("stream", "exited")], "created"),
        ],
    )
    def test_device_missing_or_stopped(self, state, containers, condition):
        """First pass: remembered, nothing retired; a pass after the grace: orphaned."""
        first = plan(observed([session(state)], containers), POLICY)
        assert kinds(first) == [(Kind.MARK_DEVICE_DOWN, SID)] and first[0].reason == f"device {condition}"
        within = plan(
            observed([session(state)], containers, down={SID: (DEVICE_GRACE - TICK, condition)}), POLICY
        )
        assert within == []
        after = plan(observed([session(state)], containers, down={SID: (DEVICE_GRACE, condition)}), POLICY)
        assert kinds(after) == [(Kind.ORPHAN_SESSION, SID)]
        assert after[0].reason == f"device {condition} for {DEVICE_GRACE.total_seconds():.0f} s"

    def test_its_stream_is_not_removed_separately(self):
        """The orphaning removes the session's containers; rule c leaves them alone meanwhile."""
        long_down = observed(
            [session(State.VERIFIED)], [container("stream")], down={SID: (DEVICE_GRACE * 2, "missing")}
        )
        assert [a.kind for a in plan(long_down, POLICY)] == [Kind.ORPHAN_SESSION]

    def test_a_live_session_whose_device_row_just_ended_is_left_to_whoever_ended_it(self):
        """A provision's rollback retires the device, then its compensation ends the session: a
        pass in between must not orphan it (the compensation's own final state would be lost)."""
        just = replace(session(State.VERIFIED), device_ended_at=NOW - DEVICE_GRACE + timedelta(seconds=1))
        obs = replace(observed([just], []), devices=[])
        assert plan(obs, POLICY) == []

    def test_a_live_session_whose_device_row_ended_past_the_grace_is_orphaned(self):
        """Retired or failed behind its back and nobody ended the session: it must not stay live
        without its containers."""
        long_ago = replace(session(State.VERIFIED), device_ended_at=NOW - DEVICE_GRACE)
        actions = plan(replace(observed([long_ago], []), devices=[]), POLICY)
        assert kinds(actions) == [(Kind.ORPHAN_SESSION, SID)]
        assert actions[0].reason == f"{Reason.DEVICE_ENDED_UNDER_SESSION} (60 s ago)"


CONDITIONS = [
    # (device container as listed, the condition recorded, its grace)
    (None, "missing", DEVICE_GRACE),
    ("exited", "exited", DEVICE_GRACE),
    ("paused", "paused", DEVICE_GRACE),
    ("restarting", "restarting", DEVICE_GRACE),
    ("unhealthy", "unhealthy", UNHEALTHY),
]


def device_container(listed: str | None, *, sid: str = SID) -> list[ContainerView]:
    if listed is None:
        return []
    if listed == "unhealthy":
        return [replace(container("device", sid=sid), health="unhealthy")]
    return [container("device", listed, sid=sid)]


POOL = "dpooldevice1"


class TestDeviceDown:
    """One rule for every device (reconciler.down): a session's and an idle pool device's alike.
    The first pass records down_since and the condition; a pass at the grace (measured from that
    first pass) orphans the session or retires the idle device; a device up again is cleared."""

    def session_world(self, listed, down=None):
        containers = [*device_container(listed), container("stream")]
        return observed([session(State.VERIFIED)], containers, down={SID: down} if down else None)

    def pool_world(self, listed, down=None):
        return replace(
            observed([], device_container(listed, sid=POOL)),
            devices=[device(POOL, state="idle", holder=None, down=down)],
        )

    @pytest.mark.parametrize(("listed", "condition", "grace"), CONDITIONS)
    def test_session_device(self, listed, condition, grace):
        first = plan(self.session_world(listed), POLICY)
        assert [(a.kind, a.session_id, a.device_id, a.detail) for a in first] == [
            (Kind.MARK_DEVICE_DOWN, SID, SID, {"condition": condition})
        ]
        assert plan(self.session_world(listed, (grace - TICK, condition)), POLICY) == []
        after = plan(self.session_world(listed, (grace, condition)), POLICY)
        assert [(a.kind, a.session_id, a.reason) for a in after] == [
            (Kind.ORPHAN_SESSION, SID, f"device {condition} for {grace.total_seconds():.0f} s")
        ]

    @pytest.mark.parametrize(("listed", "condition", "grace"), CONDITIONS)
    def test_idle_pool_device(self, listed, condition, grace):
        first = plan(self.pool_world(listed), POLICY)
        assert [(a.kind, a.session_id, a.device_id, a.detail) for a in first] == [
            (Kind.MARK_DEVICE_DOWN, None, POOL, {"condition": condition})
        ]
        assert plan(self.pool_world(listed, (grace - TICK, condition)), POLICY) == []
        after = plan(self.pool_world(listed, (grace, condition)), POLICY)
        assert [(a.kind, a.device_id, a.reason) for a in after] == [
            (Kind.RETIRE_DEVICE, POOL, f"device {condition} for {grace.total_seconds():.0f} s")
        ]

    @pytest.mark.parametrize("world", ["session_world", "pool_world"])
    @pytest.mark.parametrize(("listed", "condition", "grace"), CONDITIONS)
    def test_up_again_clears_the_record(self, world, listed, condition, grace):
        up = getattr(self, world)("running", (grace * 10, condition))
        actions = plan(up, POLICY)
        assert [(a.kind, a.reason) for a in actions] == [(Kind.CLEAR_DEVICE_DOWN, Reason.DEVICE_RECOVERED)]
        assert actions[0].device_id == (SID if world == "session_world" else POOL)

    @pytest.mark.parametrize("world", ["session_world", "pool_world"])
    def test_another_condition_later_keeps_the_first_record_and_its_time(self, world):
        """Paused, then exited: nothing new is recorded; the grace runs from the first pass."""
        assert plan(getattr(self, world)("exited", (DEVICE_GRACE - TICK, "paused")), POLICY) == []
        after = plan(getattr(self, world)("exited", (DEVICE_GRACE, "paused")), POLICY)
        assert [a.kind for a in after] == [
            Kind.ORPHAN_SESSION if world == "session_world" else Kind.RETIRE_DEVICE
        ]
        assert after[0].reason == "device exited for 60 s, first seen paused"

    @pytest.mark.parametrize(("down_for", "orphaned"), [(DEVICE_GRACE - TICK, False), (DEVICE_GRACE, True)])
    def test_unhealthy_after_a_pause_gets_the_device_grace(self, down_for, orphaned):
        """A paused device comes back unhealthy until its next probe (Docker probes fail while
        it is paused): the shorter unhealthy grace is for a device unhealthy from the start."""
        actions = plan(self.session_world("unhealthy", (down_for, "paused")), POLICY)
        assert kinds(actions) == ([(Kind.ORPHAN_SESSION, SID)] if orphaned else [])

    def test_stopped_after_unhealthy_gets_the_device_grace(self):
        down = (UNHEALTHY * 1.5, "unhealthy")
        assert plan(self.session_world("exited", down), POLICY) == []

    @pytest.mark.parametrize("state", ["booting", "claimed"])
    def test_a_booting_device_or_one_a_provision_holds_is_left_alone(self, state):
        """A boot under way has no running container yet; the pool and the provision watch it."""
        obs = replace(
            observed([session(State.LAUNCHING)], []), devices=[device(SID, state=state, holder=SID)]
        )
        assert plan(obs, POLICY) == []

    def test_a_healthy_world_plans_nothing(self):
        world = replace(
            observed([session(State.VERIFIED)], [*both(), container("device", sid=POOL)]),
        )
        world = replace(world, devices=[*world.devices, device(POOL, state="idle", holder=None)])
        assert plan(world, POLICY) == []


class TestLeakedContainers:
    """c. a container whose session is terminal or unknown is removed, only after the grace."""

    @pytest.mark.parametrize(
        ("age", "removed"),
        [
            (GRACE - TICK, False),
            (GRACE, True),
            (GRACE * 5, True),
            (timedelta(0), False),
            (None, True),  # no creation time at all: old enough
        ],
    )
    def test_grace_boundary(self, age, removed):
        leaked = container("device", sid="sunknown2345", age=age)
        actions = plan(observed([], [leaked]), POLICY)
        if removed:
            assert [(a.kind, a.container_id) for a in actions] == [(Kind.REMOVE_CONTAINER, leaked.id)]
            assert actions[0].target == leaked.name
            assert actions[0].device_id == "sunknown2345"
        else:
            assert actions == []

    def test_every_container_of_an_ended_device_is_removed(self):
        ended = [container("device", "exited", sid="sended234567"), container("stream", sid="sended234567")]
        actions = plan(observed([], ended), POLICY)
        assert sorted(a.container_name for a in actions) == sorted(c.name for c in ended)
        assert {a.reason for a in actions} == {Reason.DEVICE_ENDED}

    def test_container_without_device_label(self):
        actions = plan(observed([], [container("device", sid="")]), POLICY)
        assert [(a.kind, a.reason, a.session_id) for a in actions] == [
            (Kind.REMOVE_CONTAINER, Reason.DEVICE_UNKNOWN, None)
        ]

    @pytest.mark.parametrize("state", [State.REQUESTED, State.NUMBER_ACQUIRED, State.RELEASING])
    def test_containers_of_nonterminal_sessions_are_never_removed(self, state):
        obs = observed([session(state)], [container("device", "exited"), container("stream", "created")])
        assert [a for a in plan(obs, POLICY) if a.kind == Kind.REMOVE_CONTAINER] == []

    def test_only_the_leaked_one_goes(self):
        obs = observed([session(State.VERIFIED)], [*both(), *both("sother234567")])
        actions = plan(obs, POLICY)
        assert sorted(a.container_name for a in actions) == sorted(c.name for c in both("sother234567"))


DEAD_RUN_STATES = ["CRASHED", "CANCELLED", "FAILED", "COMPLETED", None]
ALIVE_RUN_STATES = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"]
PROVISIONING_STATES = [State.REQUESTED, State.NUMBER_ACQUIRED, State.LAUNCHING, State.AWAITING_CODE]


class TestDeadProvision:
    """d. a provisioning session whose flow run is gone (or whose heartbeat stopped) is compensated,
    but only once provisioning_deadline has passed since its last change."""

    @pytest.mark.parametrize("state", PROVISIONING_STATES)
    @pytest.mark.parametrize("run_state", DEAD_RUN_STATES)
    def test_flow_run_not_alive(self, state, run_state):
        heartbeat = STALE if run_state is None else timedelta(seconds=1)  # not found + fresh = alive
        obs = observed([session(state, heartbeat_age=heartbeat)], both(), runs={RUN: run_state})
        actions = plan(obs, POLICY)
        assert kinds(actions) == [(Kind.COMPENSATE_SESSION, SID)]
        assert actions[0].reason.startswith(Reason.FLOW_RUN_GONE)
        assert ("not found" if run_state is None else run_state.lower()) in actions[0].reason

    def test_flow_run_missing_from_prefect(self):
        actions = plan(observed([session(State.REQUESTED, heartbeat_age=None)], runs={}), POLICY)
        assert kinds(actions) == [(Kind.COMPENSATE_SESSION, SID)] and "not found" in actions[0].reason

    def test_flow_run_not_found_is_not_death_while_the_heartbeat_is_fresh(self):
        """A run on another Prefect API (the CLI's temporary server) beats in our database."""
        fresh = session(State.AWAITING_CODE, heartbeat_age=STALE - TICK)
        assert plan(observed([fresh], both(), runs={}), POLICY) == []
        stale = session(State.AWAITING_CODE, heartbeat_age=STALE)
        assert kinds(plan(observed([stale], both(), runs={}), POLICY)) == [(Kind.COMPENSATE_SESSION, SID)]

    def test_no_flow_run_recorded(self):
        actions = plan(observed([session(State.NUMBER_ACQUIRED, run=None)]), POLICY)
        assert kinds(actions) == [(Kind.COMPENSATE_SESSION, SID)] and "no flow run" in actions[0].reason

    @pytest.mark.parametrize("state", PROVISIONING_STATES)
    @pytest.mark.parametrize("run_state", ALIVE_RUN_STATES)
    def test_live_flow_with_fresh_heartbeat_is_left_alone(self, state, run_state):
        containers = both() if state == State.AWAITING_CODE else []
        obs = observed([session(state)], containers, runs={RUN: run_state})
        assert plan(obs, POLICY) == []

    @pytest.mark.parametrize(
        ("heartbeat_age", "dead"), [(STALE - TICK, False), (STALE, True), (STALE * 10, True)]
    )
    def test_stale_heartbeat_boundary(self, heartbeat_age, dead):
        obs = observed([session(State.LAUNCHING, heartbeat_age=heartbeat_age)])
        actions = plan(obs, POLICY)
        assert kinds(actions) == ([(Kind.COMPENSATE_SESSION, SID)] if dead else [])
        if dead:
            assert "heartbeat stopped" in actions[0].reason

    def test_without_heartbeat_the_last_change_counts(self):
        recent = session(State.REQUESTED, heartbeat_age=None, age=STALE - TICK)
        stale = session(State.REQUESTED, heartbeat_age=None, age=max(STALE, DEADLINE))
        assert plan(observed([recent]), POLICY) == []
        assert kinds(plan(observed([stale]), POLICY)) == [(Kind.COMPENSATE_SESSION, SID)]

    def test_fresh_heartbeat_outweighs_an_old_change(self):
        """A provision waiting minutes for its code changes nothing; its heartbeat keeps it alive."""
        waiting = session(State.AWAITING_CODE, age=timedelta(hours=2), heartbeat_age=timedelta(seconds=1))
        assert plan(observed([waiting], both()), POLICY) == []

    @pytest.mark.parametrize("runs", [{}, {RUN: None}], ids=["no-run-recorded", "run-not-found"])
    @pytest.mark.parametrize(("age", "acted"), [(DEADLINE - TICK, False), (DEADLINE, True)])
    def test_provisioning_deadline_boundary(self, runs, age, acted):
        """Without a run Prefect knows, the session waits: the gateway may be creating its run."""
        run = RUN if runs else None
        obs = observed([session(State.NUMBER_ACQUIRED, run=run, age=age, heartbeat_age=None)], runs=runs)
        assert kinds(plan(obs, POLICY)) == ([(Kind.COMPENSATE_SESSION, SID)] if acted else [])

    @pytest.mark.parametrize("run_state", ["CRASHED", "FAILED", "CANCELLED", "COMPLETED"])
    def test_a_final_run_is_acted_on_by_the_pass_that_sees_it(self, run_state):
        just_changed = session(State.AWAITING_CODE, age=timedelta(0), heartbeat_age=timedelta(0))
        actions = plan(observed([just_changed], both(), runs={RUN: run_state}), POLICY)
        assert kinds(actions) == [(Kind.COMPENSATE_SESSION, SID)] and actions[0].run_id == RUN

    @pytest.mark.parametrize(("running_for", "dead"), [(STALE - TICK, False), (STALE, True)])
    def test_running_without_a_heartbeat_counts_from_entering_running(self, running_for, dead):
        """A run that waited Scheduled long after the session was written has its whole stale_after
        from entering Running to send its first heartbeat."""
        waited = session(State.AWAITING_CODE, age=timedelta(hours=1), heartbeat_age=None)
        detail = {RUN: RunDetail(since=NOW - running_for, message=None)}
        actions = plan(Observed(NOW, [waited], [], both(), {RUN: "RUNNING"}, detail), POLICY)
        assert kinds(actions) == ([(Kind.COMPENSATE_SESSION, SID)] if dead else [])
        if dead:
            assert "running but never beat since" in actions[0].reason and actions[0].run_id == RUN

    @pytest.mark.parametrize(
        ("run_state", "waiting", "dead"),
        [
            ("PENDING", PENDING_DEADLINE - TICK, False),
            ("PENDING", PENDING_DEADLINE, True),
            ("SCHEDULED", PENDING_DEADLINE, False),
            ("SCHEDULED", START_DEADLINE - TICK, False),
            ("SCHEDULED", START_DEADLINE, True),
        ],
    )
    def test_not_started_deadlines_from_the_state_timestamp(self, run_state, waiting, dead):
        """Pending (a worker took it) gets the short deadline, Scheduled (none took it) the long one,
        both from when Prefect's server entered the state, not from the session's age."""
        bought = session(State.AWAITING_CODE, age=timedelta(hours=1), heartbeat_age=None)
        detail = {RUN: RunDetail(since=NOW - waiting, message=None)}
        actions = plan(Observed(NOW, [bought], [], both(), {RUN: run_state}, detail), POLICY)
        assert kinds(actions) == ([(Kind.COMPENSATE_SESSION, SID)] if dead else [])
        if dead:
            why = "no worker started it" if run_state == "SCHEDULED" else "its worker died before starting it"
            assert actions[0].reason.endswith(why) and actions[0].run_id == RUN

    def test_awaiting_code_with_dead_flow_is_compensated_not_orphaned(self):
        obs = observed([session(State.AWAITING_CODE)], [], runs={RUN: "CRASHED"})
        assert [a.kind for a in plan(obs, POLICY)] == [Kind.COMPENSATE_SESSION]

    def test_half_created_launch_of_a_live_provision_is_left_alone(self):
        """Launching: the device exists but is not running yet and the stream is missing."""
        obs = observed(
            [session(State.LAUNCHING, age=timedelta(seconds=2))],
            [container("device", "created", age=timedelta(0))],
        )
        assert plan(obs, POLICY) == []

    @pytest.mark.parametrize("state", [State.VERIFIED, State.RELEASING])
    def test_states_no_flow_is_in_charge_of_are_not_compensated(self, state):
        obs = observed([session(state, heartbeat_age=None)], both(), runs={RUN: "CRASHED"})
        assert [a for a in plan(obs, POLICY) if a.kind == Kind.COMPENSATE_SESSION] == []


class TestExpiry:
    """e. a live session past expires_at -> EXPIRE_SESSION."""

    @pytest.mark.parametrize("state", [State.AWAITING_CODE, State.VERIFIED])
    @pytest.mark.parametrize(("expires_in", "expired"), [(TICK, False), (timedelta(0), True), (-TICK, True)])
    def test_ttl_boundary(self, state, expires_in, expired):
        obs = observed([session(state, expires_in=expires_in)], both())
        assert kinds(plan(obs, POLICY)) == ([(Kind.EXPIRE_SESSION, SID)] if expired else [])

    def test_no_ttl_never_expires(self):
        assert plan(observed([session(State.VERIFIED, expires_in=None)], both()), POLICY) == []

    def test_expiry_wins_over_healing(self):
        obs = observed([session(State.VERIFIED, expires_in=-TICK)], [container("device")])
        assert [a.kind for a in plan(obs, POLICY)] == [Kind.EXPIRE_SESSION]

    @pytest.mark.parametrize("state", [State.REQUESTED, State.LAUNCHING, State.RELEASING])
    def test_only_live_sessions_expire(self, state):
        obs = observed([session(state, expires_in=-timedelta(hours=1))])
        assert [a for a in plan(obs, POLICY) if a.kind == Kind.EXPIRE_SESSION] == []


class TestStalledRelease:
    """g. a session left in releasing (its release process died) is released, after the deadline."""

    @pytest.mark.parametrize(("age", "acted"), [(DEADLINE - TICK, False), (DEADLINE, True)])
    def test_deadline_boundary(self, age, acted):
        obs = observed([session(State.RELEASING, age=age, expires_in=-TICK)], both(), runs={RUN: "COMPLETED"})
        actions = plan(obs, POLICY)
        assert [(a.kind, a.reason) for a in actions] == (
            [(Kind.FINISH_RELEASE, Reason.RELEASE_STALLED)] if acted else []
        )

    def test_its_containers_and_leases_are_left_to_the_release(self):
        obs = observed([session(State.RELEASING)], both(), leases=[lease(LeaseOutcome.ACTIVE)])
        assert [a.kind for a in plan(obs, POLICY)] == [Kind.FINISH_RELEASE]


class TestLeases:
    """f. numbers left open on ended sessions; cancel retries; purchases with no recorded result."""

    @pytest.mark.parametrize(
        "outcome", [LeaseOutcome.ACTIVE, LeaseOutcome.CODE_RECEIVED, LeaseOutcome.CANCEL_PENDING]
    )
    def test_open_lease_on_ended_session_is_closed(self, outcome):
        actions = plan(observed([], leases=[lease(outcome)]), POLICY)
        assert [(a.kind, a.lease_id) for a in actions] == [(Kind.CLOSE_LEASE, 7)]
        assert actions[0].target == "lease 7"

    @pytest.mark.parametrize(
        "outcome", [LeaseOutcome.ACTIVE, LeaseOutcome.CODE_RECEIVED, LeaseOutcome.PENDING]
    )
    def test_leases_of_live_sessions_are_left_to_their_flow(self, outcome):
        obs = observed([session(State.AWAITING_CODE)], both(), leases=[lease(outcome, activation=None)])
        assert plan(obs, POLICY) == []

    @pytest.mark.parametrize("state", [State.AWAITING_CODE, State.VERIFIED])
    def test_refused_cancel_on_a_live_session_is_retried_when_due(self, state):
        due = lease(LeaseOutcome.CANCEL_PENDING, retry_after=NOW - TICK)
        later = lease(LeaseOutcome.CANCEL_PENDING, retry_after=NOW + TICK, lease_id=8)
        actions = plan(observed([session(state)], both(), leases=[due, later]), POLICY)
        assert [(a.kind, a.reason, a.lease_id) for a in actions] == [
            (Kind.CLOSE_LEASE, Reason.CANCEL_RETRY, 7)
        ]

    @pytest.mark.parametrize("state", [State.NUMBER_ACQUIRED, State.LAUNCHING, State.RELEASING])
    def test_refused_cancel_of_a_provision_or_release_in_progress_is_left_to_it(self, state):
        obs = observed([session(state, age=TICK)], both(), leases=[lease(LeaseOutcome.CANCEL_PENDING)])
        assert plan(obs, POLICY) == []

    @pytest.mark.parametrize("state", [None, State.NUMBER_ACQUIRED, State.AWAITING_CODE, State.VERIFIED])
    @pytest.mark.parametrize(("retry_in", "looked_up"), [(TICK, False), (timedelta(0), True), (None, True)])
    def test_unknown_purchase_is_looked_up_on_any_session_when_due(self, state, retry_in, looked_up):
        sessions, containers = ([], []) if state is None else ([session(state, age=TICK)], both())
        unknown = lease(
            LeaseOutcome.UNKNOWN, activation=None, retry_after=None if retry_in is None else NOW + retry_in
        )
        actions = plan(observed(sessions, containers, leases=[unknown]), POLICY)
        assert [(a.kind, a.reason) for a in actions] == (
            [(Kind.RESOLVE_PENDING_LEASE, Reason.PURCHASE_UNKNOWN)] if looked_up else []
        )

    @pytest.mark.parametrize(
        ("retry_in", "closed"),
        [(timedelta(seconds=30), False), (TICK, False), (timedelta(0), True), (-TICK, True)],
    )
    def test_cancel_pending_waits_for_retry_after(self, retry_in, closed):
        pending = lease(LeaseOutcome.CANCEL_PENDING, retry_after=NOW + retry_in)
        actions = plan(observed([], leases=[pending]), POLICY)
        if closed:
            assert [(a.kind, a.reason) for a in actions] == [(Kind.CLOSE_LEASE, Reason.CANCEL_RETRY)]
        else:
            assert actions == []

    def test_cancel_pending_without_retry_time_is_retried(self):
        actions = plan(observed([], leases=[lease(LeaseOutcome.CANCEL_PENDING)]), POLICY)
        assert [(a.kind, a.reason) for a in actions] == [(Kind.CLOSE_LEASE, Reason.CANCEL_RETRY)]

    @pytest.mark.parametrize(("age", "resolved"), [(GRACE - TICK, False), (GRACE, True), (GRACE * 3, True)])
    def test_pending_purchase_without_activation_after_grace(self, age, resolved):
        pending = lease(LeaseOutcome.PENDING, activation=None, age=age)
        actions = plan(observed([], leases=[pending]), POLICY)
        assert [(a.kind, a.lease_id) for a in actions] == (
            [(Kind.RESOLVE_PENDING_LEASE, 7)] if resolved else []
        )

    def test_lease_of_a_session_compensated_in_this_pass_is_left_to_the_compensation(self):
        obs = observed(
            [session(State.NUMBER_ACQUIRED)], leases=[lease(LeaseOutcome.ACTIVE)], runs={RUN: "CRASHED"}
        )
        assert [a.kind for a in plan(obs, POLICY)] == [Kind.COMPENSATE_SESSION]


ROOT = Path(__file__).resolve().parents[2]


class TestWholePlan:
    def test_nothing_observed_nothing_planned(self):
        assert plan(observed(), POLICY) == []

    def test_one_action_per_problem_in_a_mixed_world(self):
        actions = plan(mixed_world(), POLICY)
        assert sorted((a.kind.value, a.target) for a in actions) == sorted(
            (kind.value, target) for kind, target in MIXED_WORLD_PLAN
        )

    def test_deterministic(self):
        """The same plan, in the same order, in every process: no set or hash order leaks in."""
        assert [(a.kind, a.target) for a in plan(mixed_world(), POLICY)] == MIXED_WORLD_PLAN
        script = (
            "from provisioner.reconciler import plan; from tests.reconcile.views import POLICY, mixed_world; "
            "print([(a.kind.value, a.target) for a in plan(mixed_world(), POLICY)])"
        )
        expected = str([(kind.value, target) for kind, target in MIXED_WORLD_PLAN])
        for seed in ("1", "2", "3"):  # string hashes differ from this process's and each other's
            done = subprocess.run(
                [sys.executable, "-c", script],
                env={**os.environ, "PYTHONHASHSEED": seed},
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.stdout.strip() == expected, done.stderr[-2000:]


class TestPrefectSide:
    """d'. a run that never started (missing, stuck waiting, crashed before any work) is submitted
    again once; anything else, or a second time, ends the session with the run's real reason.
    h. a provision run still alive for an ended session is ended in Prefect."""

    def accepted(self, **kw) -> SessionView:
        kw.setdefault("heartbeat_age", None)
        return session(State.REQUESTED, has_request=True, **kw)

    def test_accepted_session_without_a_run_is_submitted(self):
        actions = plan(observed([self.accepted(run=None)]), POLICY)
        assert kinds(actions) == [(Kind.SUBMIT_RUN, SID)] and actions[0].run_id is None
        assert "no flow run recorded" in actions[0].reason

    @pytest.mark.parametrize("run_state", ["CRASHED", None])
    def test_run_crashed_or_missing_before_any_work_is_resubmitted_once(self, run_state):
        actions = plan(observed([self.accepted()], runs={RUN: run_state}), POLICY)
        assert kinds(actions) == [(Kind.SUBMIT_RUN, SID)] and actions[0].run_id == RUN
        twice = plan(observed([self.accepted(submissions=2)], runs={RUN: run_state}), POLICY)
        assert kinds(twice) == [(Kind.COMPENSATE_SESSION, SID)]

    @pytest.mark.parametrize(
        ("run_state", "deadline"), [("SCHEDULED", START_DEADLINE), ("PENDING", PENDING_DEADLINE)]
    )
    def test_run_stuck_waiting_past_its_deadline_is_resubmitted(self, run_state, deadline):
        waiting_since = {RUN: RunDetail(since=NOW - deadline, message=None)}
        stuck = Observed(NOW, [self.accepted()], [], [], {RUN: run_state}, waiting_since)
        actions = plan(stuck, POLICY)
        assert kinds(actions) == [(Kind.SUBMIT_RUN, SID)] and actions[0].run_id == RUN
        assert actions[0].reason.startswith(Reason.RUN_NEVER_STARTED)
        recent = {RUN: RunDetail(since=NOW - deadline + TICK, message=None)}
        assert plan(Observed(NOW, [self.accepted()], [], [], {RUN: run_state}, recent), POLICY) == []

    @pytest.mark.parametrize("run_state", ["CRASHED", "PENDING"])
    def test_a_run_its_worker_failed_to_start_does_not_use_up_the_resubmission(self, run_state):
        """Its worker took it and never got it Running (Crashed "Failed to submit flow run to
        infrastructure" on a 503 from Prefect, or Pending past its deadline): nothing of ours ran,
        so it is made again after a re-submission too, up to max_submissions_unstarted runs."""
        cause = "Failed to submit flow run to infrastructure: 503"
        unstarted = {RUN: RunDetail(since=NOW - PENDING_DEADLINE, message=cause, started=False)}
        started = {RUN: RunDetail(since=NOW - PENDING_DEADLINE, message=cause, started=True)}

        def planned(submissions: int, details: dict) -> list:
            world = Observed(NOW, [self.accepted(submissions=submissions)], [], [], {RUN: run_state}, details)
            return plan(world, POLICY)

        assert POLICY.max_submissions == 2 and POLICY.max_submissions_unstarted == 4
        for submissions in (1, 2, 3):
            actions = planned(submissions, unstarted)
            assert kinds(actions) == [(Kind.SUBMIT_RUN, SID)] and actions[0].run_id == RUN
            assert actions[0].reason.startswith(Reason.RUN_NEVER_STARTED)
        assert kinds(planned(4, unstarted)) == [(Kind.COMPENSATE_SESSION, SID)]
        assert kinds(planned(2, started)) == [(Kind.COMPENSATE_SESSION, SID)]

    def test_a_run_no_worker_took_keeps_the_single_resubmission(self):
        """Scheduled past its deadline: no worker took it, and another run would wait the same."""
        waiting = {RUN: RunDetail(since=NOW - START_DEADLINE, message=None, started=False)}
        world = Observed(NOW, [self.accepted(submissions=2)], [], [], {RUN: "SCHEDULED"}, waiting)
        assert kinds(plan(world, POLICY)) == [(Kind.COMPENSATE_SESSION, SID)]

    def test_a_run_running_that_never_beat_is_resubmitted_not_failed(self):
        """Prefect still says Running (its Failed/Crashed updates were lost), our heartbeat never
        came and nothing was bought: run it again."""
        detail = {RUN: RunDetail(since=NOW - STALE, message=None)}
        actions = plan(Observed(NOW, [self.accepted()], [], [], {RUN: "RUNNING"}, detail), POLICY)
        assert kinds(actions) == [(Kind.SUBMIT_RUN, SID)] and actions[0].run_id == RUN
        assert actions[0].reason.startswith(Reason.RUN_DIED_EARLY) and "never beat" in actions[0].reason

    @pytest.mark.parametrize(
        ("state", "resubmitted"),
        [
            (State.REQUESTED, True),
            (State.LAUNCHING, True),
            (State.AWAITING_NUMBER, True),
            (State.NUMBER_ACQUIRED, False),
            (State.AWAITING_CODE, False),
        ],
    )
    @pytest.mark.parametrize("run_state", ["RUNNING", "FAILED", "CRASHED", None])
    def test_resubmitted_when_nothing_was_bought(self, state, resubmitted, run_state):
        """Before awaiting_code with no open lease, whatever Prefect last said of the dead run."""
        dead = session(state, has_request=True, heartbeat_age=STALE, age=DEADLINE)
        actions = plan(observed([dead], runs={RUN: run_state}), POLICY)
        kind = Kind.SUBMIT_RUN if resubmitted else Kind.COMPENSATE_SESSION
        assert kinds(actions) == [(kind, SID)] and actions[0].run_id == RUN

    def test_a_cancelled_run_is_not_resubmitted(self):
        """Someone cancelled it (the UI, the API): its session ends, it does not start again."""
        actions = plan(observed([self.accepted()], runs={RUN: "CANCELLED"}), POLICY)
        assert kinds(actions) == [(Kind.COMPENSATE_SESSION, SID)]

    def test_a_session_that_spent_something_is_never_resubmitted(self):
        bought = session(State.NUMBER_ACQUIRED, has_request=True, heartbeat_age=None)
        crashed = {RUN: RunDetail(since=NOW, message="no heartbeat for 90 s")}
        actions = plan(Observed(NOW, [bought], [], [], {RUN: "CRASHED"}, crashed), POLICY)
        assert kinds(actions) == [(Kind.COMPENSATE_SESSION, SID)]
        assert actions[0].reason.endswith("is crashed: no heartbeat for 90 s")
        pending = lease(LeaseOutcome.PENDING, activation=None)
        actions = plan(observed([self.accepted()], leases=[pending], runs={RUN: "CRASHED"}), POLICY)
        assert [a.kind for a in actions] == [Kind.COMPENSATE_SESSION]

    def test_a_run_made_outside_the_gateway_is_not_resubmitted(self):
        actions = plan(
            observed([session(State.REQUESTED, heartbeat_age=None)], runs={RUN: "CRASHED"}), POLICY
        )
        assert kinds(actions) == [(Kind.COMPENSATE_SESSION, SID)]

    @pytest.mark.parametrize(("ended", "acted"), [(GRACE - TICK, False), (GRACE, True)])
    def test_alive_run_of_an_ended_session_is_ended(self, ended, acted):
        stray = StrayRun(RUN, "RUNNING", SID, State.FAILED, NOW - ended)
        obs = Observed(NOW, [], [], [], {}, {}, [stray])
        actions = plan(obs, POLICY)
        assert kinds(actions) == ([(Kind.END_STRAY_RUN, SID)] if acted else [])
        if acted:
            assert actions[0].run_id == RUN and "failed" in actions[0].reason


def sick(role: str, *, sid: str = SID) -> ContainerView:
    return replace(container(role, sid=sid), health="unhealthy")


class TestLiveness:
    """The unhealthy device (the device-down rule) is covered by TestDeviceDown."""

    def test_unhealthy_stream_is_replaced(self):
        obs = replace(
            observed([session(State.AWAITING_CODE)], [container("device"), sick("stream")]),
            devices=[device()],
        )
        actions = plan(obs, POLICY)
        assert [(a.kind, a.reason, a.device_id) for a in actions] == [
            (Kind.HEAL_STREAM, Reason.STREAM_UNHEALTHY, SID)
        ]

    @pytest.mark.parametrize("routed", [False, True])
    def test_running_stream_without_a_recorded_route_gets_one_by_a_heal(self, routed):
        """A device booted before stream routes were recorded (0009): the gateway cannot reach it
        until a heal (which finds the running stream) records its route; with a route, nothing."""
        obs = replace(observed([session(State.VERIFIED)], both()), devices=[replace(device(), routed=routed)])
        actions = plan(obs, POLICY)
        expected = [] if routed else [(Kind.HEAL_STREAM, Reason.STREAM_UNROUTED, SID)]
        assert [(a.kind, a.reason, a.device_id) for a in actions] == expected

    def test_claimed_device_of_an_ended_session_is_retired(self):
        obs = replace(observed([], both()), devices=[device(holder="sgone2345678")])
        assert [(a.kind, a.device_id) for a in plan(obs, POLICY)] == [(Kind.RETIRE_DEVICE, SID)]

    def test_idle_pool_device_and_its_containers_are_left_alone(self):
        obs = replace(observed([], both()), devices=[device(state="idle", holder=None)])
        assert plan(obs, POLICY) == []


class TestIdleTimeout:
    @pytest.mark.parametrize(
        ("state", "quiet", "released"),
        [
            (State.VERIFIED, timedelta(seconds=600), True),
            (State.VERIFIED, timedelta(seconds=600) - TICK, False),
            (State.AWAITING_CODE, timedelta(hours=5), False),  # only verified sessions idle out
        ],
    )
    def test_verified_session_quiet_for_its_idle_timeout_is_expired(self, state, quiet, released):
        quiet_session = replace(session(state), idle_timeout_s=600, idle_since=NOW - quiet)
        actions = plan(observed([quiet_session], both()), POLICY)
        assert kinds(actions) == ([(Kind.EXPIRE_SESSION, SID)] if released else [])
        if released:
            assert actions[0].reason.startswith(f"{Reason.IDLE}: no activity for 600 s")

    def test_ttl_stays_absolute_for_an_active_session(self):
        active = replace(session(State.VERIFIED, expires_in=-TICK), idle_timeout_s=600, idle_since=NOW)
        actions = plan(observed([active], both()), POLICY)
        assert [(a.kind, a.reason) for a in actions] == [(Kind.EXPIRE_SESSION, Reason.TTL_PASSED)]
