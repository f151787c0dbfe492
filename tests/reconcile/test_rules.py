"""Each reconcile rule alone (reconciler.rules), and the order plan() applies them in: when a rule
applies (a Verdict, final or not) and when it leaves the item to the next rule (None). Pure: no
Docker, no database, no Prefect. plan() as a whole is tabled in test_plan.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from provisioner.reconciler.model import (
    Action,
    ContainerView,
    Context,
    DeviceView,
    Kind,
    LeaseView,
    NetworkView,
    Observed,
    Policy,
    Reason,
    SessionView,
    StrayRun,
    Verdict,
)
from provisioner.reconciler.plan import DEVICE_RULES, LEASE_RULES, SESSION_RULES, apply, plan
from provisioner.reconciler.rules import devices, egress, leases, runs, sessions
from provisioner.store import LIVE, PROVISIONING, LeaseOutcome, State

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
POLICY = Policy(
    grace=timedelta(seconds=60),
    provisioning_deadline=timedelta(seconds=120),
    stale_after=timedelta(seconds=90),
    device_grace=timedelta(seconds=60),
    run_start_deadline=timedelta(seconds=300),
    unhealthy_grace=timedelta(seconds=30),
)
SID, RUN, DEV = "sabcdefghijk", "0b1c2d3e-0000-4000-8000-000000000001", "dabcdefghijk"


def a_session(state: State = State.VERIFIED, **fields) -> SessionView:
    base = SessionView(
        id=SID,
        state=state,
        flow_run_id=RUN,
        updated_at=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(hours=1),
        has_code=state == State.VERIFIED,
        heartbeat_at=NOW - timedelta(seconds=1),
        device_id=DEV,
    )
    return replace(base, **fields)


def a_device(state: str = "claimed", **fields) -> DeviceView:
    return replace(DeviceView(DEV, state, "stub", SID, host="h1"), **fields)


def a_container(role: str, state: str = "running", *, device: str = DEV, **fields) -> ContainerView:
    base = ContainerView(f"id-{role}", f"prov-{device}-{role}", device, role, state, NOW - timedelta(hours=1))
    return replace(base, **fields)


def a_lease(outcome: LeaseOutcome, **fields) -> LeaseView:
    base = LeaseView(7, SID, "sms_activate", "1001", outcome, NOW - timedelta(hours=1), None)
    return replace(base, **fields)


def ctx(
    sessions_=(),
    devices_=(),
    containers=(),
    leases_=(),
    *,
    runs_=None,
    ending=frozenset(),
    **observed,
) -> Context:
    obs = Observed(
        now=NOW,
        sessions=list(sessions_),
        leases=list(leases_),
        containers=list(containers),
        flow_runs={RUN: "RUNNING"} if runs_ is None else runs_,
        devices=list(devices_),
        **observed,
    )
    return replace(Context.of(obs, POLICY), ending=frozenset(ending))


def kinds(verdict: Verdict | None) -> list[tuple[Kind, str]] | None:
    return None if verdict is None else [(a.kind, a.reason) for a in verdict.actions]


class TestOrder:
    """The priority of the rules is part of the policy: a change of order is a change of behaviour."""

    def names(self, rules) -> list[str]:
        return [f"{rule.__module__.rsplit('.', 1)[1]}.{rule.__name__}" for rule in rules]

    def test_session_rules(self):
        assert self.names(SESSION_RULES) == [
            "runs.dead_provision",
            "sessions.ttl_passed",
            "sessions.idle_too_long",
            "sessions.release_stalled",
            "sessions.not_live",
            "sessions.host_down",
            "sessions.device_ended",
            "sessions.session_device_down",
            "sessions.stream_broken",
        ]

    def test_device_rules(self):
        assert self.names(DEVICE_RULES) == [
            "devices.device_on_down_host",
            "devices.device_on_late_host",
            "devices.claimed_device_unheld",
            "devices.idle_device_down",
        ]

    def test_lease_rules(self):
        assert self.names(LEASE_RULES) == [
            "leases.session_ending",
            "leases.purchase_unknown",
            "leases.cancel_refused",
            "leases.session_open",
            "leases.purchase_left_pending",
            "leases.session_ended",
        ]

    def test_a_non_final_verdict_lets_the_next_rule_add_its_actions(self):
        first = Action(Kind.MARK_DEVICE_DOWN, "noted")
        second = Action(Kind.HEAL_STREAM, "healed")
        rules = (
            lambda item, c: None,
            lambda item, c: Verdict((first,), final=False),
            lambda item, c: Verdict((second,)),
            lambda item, c: pytest.fail("a rule after a final verdict ran"),
        )
        assert apply(rules, ["one", "two"], ctx()) == [first, second, first, second]

    def test_the_lease_rules_see_the_sessions_this_pass_ends(self):
        dead = a_session(State.AWAITING_CODE, heartbeat_at=None)
        c = ctx([dead], [a_device()], leases_=[a_lease(LeaseOutcome.ACTIVE)], runs_={})
        actions = plan(c.observed, POLICY)
        assert [a.kind for a in actions] == [Kind.COMPENSATE_SESSION]


class TestDeadProvision:
    def test_applies_only_to_a_provisioning_session(self):
        for state in State:
            c = ctx(runs_={})  # the run is gone
            verdict = runs.dead_provision(a_session(state, heartbeat_at=None), c)
            assert (verdict is not None) == (state in PROVISIONING), state

    @pytest.mark.parametrize(
        ("since", "acts"),
        [(POLICY.provisioning_deadline, True), (POLICY.provisioning_deadline - TICK, False)],
    )
    def test_waits_the_provisioning_deadline_since_the_last_change(self, since, acts):
        s = a_session(State.AWAITING_CODE, heartbeat_at=None, updated_at=NOW - since)
        verdict = runs.dead_provision(s, ctx(runs_={}))
        assert kinds(verdict) == (
            [(Kind.COMPENSATE_SESSION, f"{Reason.FLOW_RUN_GONE}: flow run {RUN} not found")] if acts else None
        )

    def test_a_run_that_never_did_anything_is_submitted_again(self):
        s = a_session(State.REQUESTED, heartbeat_at=None, has_request=True)
        verdict = runs.dead_provision(s, ctx(runs_={RUN: "CRASHED"}))
        assert verdict is not None and [(a.kind, a.run_id) for a in verdict.actions] == [
            (Kind.SUBMIT_RUN, RUN)
        ]

    @pytest.mark.parametrize(
        ("change", "resubmit"),
        [
            ({}, True),
            ({"submissions": 2}, False),  # the one re-submission was made
            ({"has_request": False}, False),  # nothing to submit it with
            ({"state": State.LAUNCHING}, True),  # a device, nothing bought
            ({"state": State.AWAITING_NUMBER}, True),
            ({"state": State.NUMBER_ACQUIRED}, False),  # a number bought
            ({"state": State.AWAITING_CODE}, False),
        ],
    )
    def test_resubmittable(self, change, resubmit):
        s = a_session(**{"state": State.REQUESTED, "heartbeat_at": None, "has_request": True, **change})
        assert runs.resubmittable(s, ctx(runs_={RUN: "CRASHED"})) is resubmit
        assert runs.resubmittable(s, ctx(runs_={RUN: "RUNNING"})) is resubmit  # Prefect's word aside
        assert not runs.resubmittable(s, ctx(runs_={RUN: "CANCELLED"}))  # someone stopped it

    def test_a_session_with_an_open_lease_is_never_resubmitted(self):
        s = a_session(State.REQUESTED, heartbeat_at=None, has_request=True)
        assert not runs.resubmittable(s, ctx(leases_=[a_lease(LeaseOutcome.UNKNOWN)], runs_={RUN: "CRASHED"}))

    @pytest.mark.parametrize(
        ("run", "heartbeat", "dead"),
        [
            (None, timedelta(seconds=1), False),  # not found here, but its heartbeat is fresh
            (None, POLICY.stale_after, False),  # stale, but the session changed 1 s ago: it waits
            ("RUNNING", POLICY.stale_after - TICK, False),
            ("RUNNING", POLICY.stale_after, True),
            ("FAILED", timedelta(seconds=1), True),
            # Not started: dead once its state's deadline has passed (since its last sign of life
            # here: no state timestamp observed).
            ("PENDING", POLICY.run_pending_deadline - TICK, False),
            ("PENDING", POLICY.run_pending_deadline, True),
            ("SCHEDULED", POLICY.run_start_deadline - TICK, False),
            ("SCHEDULED", POLICY.run_start_deadline, True),
        ],
    )
    def test_flow_run_dead(self, run, heartbeat, dead):
        s = a_session(
            State.AWAITING_CODE, heartbeat_at=NOW - heartbeat, updated_at=NOW - timedelta(seconds=1)
        )
        c = ctx(runs_={} if run is None else {RUN: run})
        assert (runs.flow_run_dead(s, c) is not None) is dead


class TestStrayRun:
    @pytest.mark.parametrize(("ago", "ends"), [(POLICY.grace, True), (POLICY.grace - TICK, False)])
    def test_ended_after_the_grace(self, ago, ends):
        stray = StrayRun(RUN, "RUNNING", SID, State.RELEASED, NOW - ago)
        verdict = runs.stray_run(stray, ctx())
        assert (verdict is not None) is ends
        if ends:
            assert [(a.kind, a.run_id, a.detail) for a in verdict.actions] == [
                (Kind.END_STRAY_RUN, RUN, {"state": "RUNNING"})
            ]


class TestSessionRules:
    @pytest.mark.parametrize(("expires_in", "expired"), [(timedelta(0), True), (TICK, False)])
    def test_ttl_passed(self, expires_in, expired):
        verdict = sessions.ttl_passed(a_session(expires_at=NOW + expires_in), ctx())
        assert kinds(verdict) == ([(Kind.EXPIRE_SESSION, Reason.TTL_PASSED)] if expired else None)

    def test_ttl_of_a_session_not_live_is_not_this_rule(self):
        assert sessions.ttl_passed(a_session(State.RELEASING, expires_at=NOW), ctx()) is None

    @pytest.mark.parametrize(
        ("quiet", "idle"), [(timedelta(seconds=600), True), (timedelta(seconds=600) - TICK, False)]
    )
    def test_idle_too_long(self, quiet, idle):
        s = a_session(idle_timeout_s=600, idle_since=NOW - quiet)
        verdict = sessions.idle_too_long(s, ctx())
        assert (verdict is not None) is idle
        if idle:
            assert verdict.actions[0].reason == f"{Reason.IDLE}: no activity for 600 s (idle timeout 600 s)"

    @pytest.mark.parametrize(
        ("since", "finish"),
        [(POLICY.provisioning_deadline, True), (POLICY.provisioning_deadline - TICK, False)],
    )
    def test_release_stalled_is_final_either_way(self, since, finish):
        verdict = sessions.release_stalled(a_session(State.RELEASING, updated_at=NOW - since), ctx())
        assert verdict is not None and verdict.final
        assert kinds(verdict) == ([(Kind.FINISH_RELEASE, Reason.RELEASE_STALLED)] if finish else [])

    @pytest.mark.parametrize("state", list(State))
    def test_not_live_stops_every_session_not_live(self, state):
        verdict = sessions.not_live(a_session(state), ctx())
        assert verdict == (None if state in LIVE else Verdict())

    def test_host_down_orphans_late_host_waits_other_host_passes(self):
        s = a_session()
        assert kinds(sessions.host_down(s, ctx([s], [a_device()], down_hosts=frozenset({"h1"})))) == [
            (Kind.ORPHAN_SESSION, "host h1 down")
        ]
        assert sessions.host_down(s, ctx([s], [a_device()], late_hosts=frozenset({"h1"}))) == Verdict()
        assert sessions.host_down(s, ctx([s], [a_device()], down_hosts=frozenset({"h2"}))) is None

    @pytest.mark.parametrize(
        ("ago", "orphan"), [(POLICY.device_grace, True), (POLICY.device_grace - TICK, False)]
    )
    def test_device_ended_under_a_live_session(self, ago, orphan):
        s = a_session(device_ended_at=NOW - ago)
        verdict = sessions.device_ended(s, ctx([s]))
        assert verdict is not None and verdict.final and bool(verdict.actions) is orphan

    def test_device_ended_does_not_apply_while_the_device_row_lives(self):
        assert sessions.device_ended(a_session(), ctx([a_session()], [a_device()])) is None

    def test_session_device_down_first_sighting_is_final(self):
        s = a_session()
        verdict = sessions.session_device_down(s, ctx([s], [a_device()], [a_container("stream")]))
        assert (
            verdict is not None
            and verdict.final
            and kinds(verdict) == [(Kind.MARK_DEVICE_DOWN, "device missing")]
        )

    def test_session_device_up_again_is_cleared_and_the_stream_rule_still_runs(self):
        s = a_session()
        row = a_device(down_since=NOW - timedelta(hours=1), down_condition="exited")
        verdict = sessions.session_device_down(s, ctx([s], [row], [a_container("device")]))
        assert verdict is not None and not verdict.final
        assert kinds(verdict) == [(Kind.CLEAR_DEVICE_DOWN, Reason.DEVICE_RECOVERED)]

    def test_session_device_up_is_not_this_rule(self):
        s = a_session()
        verdict = sessions.session_device_down(s, ctx([s], [a_device()], [a_container("device")]))
        assert verdict == Verdict(final=False)

    @pytest.mark.parametrize(
        ("stream", "routed", "reason"),
        [
            (None, True, Reason.STREAM_MISSING),
            (a_container("stream", "exited"), True, Reason.STREAM_STOPPED),
            (a_container("stream", health="unhealthy"), True, Reason.STREAM_UNHEALTHY),
            (a_container("stream"), False, Reason.STREAM_UNROUTED),
            (a_container("stream"), True, None),
        ],
    )
    def test_stream_broken(self, stream, routed, reason):
        s = a_session()
        containers = [a_container("device"), *([stream] if stream else [])]
        verdict = sessions.stream_broken(s, ctx([s], [a_device(routed=routed)], containers))
        assert kinds(verdict) == (None if reason is None else [(Kind.HEAL_STREAM, reason)])


class TestDeviceRules:
    def test_a_device_on_a_down_host_is_retired_unless_a_live_session_holds_it(self):
        c = ctx([a_session()], [a_device()], down_hosts=frozenset({"h1"}))
        assert devices.device_on_down_host(a_device(), c) is None
        unheld = a_device(session_id="sgone0000000")
        assert kinds(devices.device_on_down_host(unheld, c)) == [(Kind.RETIRE_DEVICE, "host h1 down")]

    def test_a_device_on_a_late_host_is_left_alone(self):
        assert devices.device_on_late_host(a_device(), ctx(late_hosts=frozenset({"h1"}))) == Verdict()
        assert devices.device_on_late_host(a_device(), ctx()) is None

    @pytest.mark.parametrize(("holder", "retired"), [(SID, False), ("sgone0000000", True), (None, True)])
    def test_claimed_device_unheld(self, holder, retired):
        verdict = devices.claimed_device_unheld(a_device(session_id=holder), ctx([a_session()]))
        assert kinds(verdict) == ([(Kind.RETIRE_DEVICE, Reason.DEVICE_UNHELD)] if retired else None)

    @pytest.mark.parametrize(
        ("down_for", "kind"),
        [
            (None, Kind.MARK_DEVICE_DOWN),
            (POLICY.device_grace - TICK, None),
            (POLICY.device_grace, Kind.RETIRE_DEVICE),
        ],
    )
    def test_idle_device_down(self, down_for, kind):
        since = NOW - down_for if down_for is not None else None
        row = a_device("idle", session_id=None, down_since=since, down_condition="exited" if since else None)
        verdict = devices.idle_device_down(row, ctx(containers=[a_container("device", "exited")]))
        assert verdict is not None and [a.kind for a in verdict.actions] == ([kind] if kind else [])

    def test_idle_device_down_is_for_idle_devices_only(self):
        assert devices.idle_device_down(a_device("booting", session_id=None), ctx()) is None

    @pytest.mark.parametrize(("age", "removed"), [(POLICY.grace, True), (POLICY.grace - TICK, False)])
    def test_unowned_container_after_the_grace(self, age, removed):
        container = a_container("device", device="dgone0000000", created_at=NOW - age)
        verdict = devices.unowned_container(container, ctx())
        assert kinds(verdict) == ([(Kind.REMOVE_CONTAINER, Reason.DEVICE_ENDED)] if removed else None)

    def test_a_container_of_a_kept_device_or_without_a_time_or_a_label(self):
        assert devices.unowned_container(a_container("device"), ctx([], [a_device()])) is None
        timeless = a_container("device", device="", created_at=None)
        assert kinds(devices.unowned_container(timeless, ctx())) == [
            (Kind.REMOVE_CONTAINER, Reason.DEVICE_UNKNOWN)
        ]

    @pytest.mark.parametrize(("age", "removed"), [(POLICY.grace, True), (POLICY.grace - TICK, False)])
    def test_unused_network_after_the_grace(self, age, removed):
        network = NetworkView("pair-x", "dgone0000000", NOW - age)
        assert kinds(devices.unused_network(network, ctx())) == (
            [(Kind.REMOVE_NETWORK, Reason.NETWORK_UNUSED)] if removed else None
        )

    def test_a_network_whose_device_has_a_container_or_a_row_stays(self):
        network = NetworkView("pair-x", DEV, None)
        assert devices.unused_network(network, ctx(containers=[a_container("stream")])) is None
        assert devices.unused_network(network, ctx([], [a_device()])) is None


class TestEgressRules:
    def test_a_network_missing_rules_gets_them_again_unknown_or_complete_is_left(self):
        missing = NetworkView("pair-x", DEV, None, guarded=False)
        action = egress.unguarded_network(missing, ctx())
        assert kinds(action) == [(Kind.GUARD_NETWORK, Reason.NETWORK_UNGUARDED)]
        assert action.actions[0].device_id == DEV
        assert egress.unguarded_network(replace(missing, guarded=True), ctx()) is None
        assert egress.unguarded_network(replace(missing, guarded=None), ctx()) is None

    def test_a_network_younger_than_the_grace_is_being_guarded_by_its_creator(self):
        young = NetworkView("pair-x", DEV, NOW - POLICY.grace + TICK, guarded=False)
        assert egress.unguarded_network(young, ctx()) is None
        old = replace(young, created_at=NOW - POLICY.grace)
        assert kinds(egress.unguarded_network(old, ctx())) == [(Kind.GUARD_NETWORK, Reason.NETWORK_UNGUARDED)]

    def test_a_network_to_remove_is_not_guarded_first(self):
        gone = NetworkView("pair-x", "dgone0000000", NOW - POLICY.grace, guarded=False)
        assert [a.kind for a in plan(Observed(NOW, [], [], [], {}, networks=[gone]), POLICY)] == [
            Kind.REMOVE_NETWORK
        ]

    def test_rules_of_a_network_that_is_gone_are_removed(self):
        obs = Observed(NOW, [], [], [], {}, stray_guards=["pair-gone"])
        assert [(a.kind, a.reason, a.network_name) for a in plan(obs, POLICY)] == [
            (Kind.REMOVE_GUARD, Reason.GUARD_STRAY, "pair-gone")
        ]


class TestLeaseRules:
    def test_session_ending_this_pass_closes_its_own_numbers(self):
        assert leases.session_ending(a_lease(LeaseOutcome.UNKNOWN), ctx(ending={SID})) == Verdict()
        assert leases.session_ending(a_lease(LeaseOutcome.UNKNOWN), ctx()) is None

    @pytest.mark.parametrize(("retry_in", "due"), [(None, True), (timedelta(0), True), (TICK, False)])
    def test_purchase_unknown_when_due(self, retry_in, due):
        lease = a_lease(LeaseOutcome.UNKNOWN, retry_after=NOW + retry_in if retry_in is not None else None)
        verdict = leases.purchase_unknown(lease, ctx([a_session()]))
        assert verdict is not None and verdict.final
        assert kinds(verdict) == ([(Kind.RESOLVE_PENDING_LEASE, Reason.PURCHASE_UNKNOWN)] if due else [])

    @pytest.mark.parametrize(
        ("state", "retried"),
        [
            (State.VERIFIED, True),
            (State.AWAITING_CODE, True),
            (State.RELEASING, False),
            (State.LAUNCHING, False),
        ],
    )
    def test_cancel_refused_is_retried_unless_a_flow_holds_the_session(self, state, retried):
        verdict = leases.cancel_refused(a_lease(LeaseOutcome.CANCEL_PENDING), ctx([a_session(state)]))
        assert kinds(verdict) == ([(Kind.CLOSE_LEASE, Reason.CANCEL_RETRY)] if retried else None)

    def test_cancel_refused_waits_its_retry_time(self):
        lease = a_lease(LeaseOutcome.CANCEL_PENDING, retry_after=NOW + TICK)
        assert leases.cancel_refused(lease, ctx()) == Verdict()

    def test_session_open_keeps_its_numbers(self):
        assert (
            leases.session_open(a_lease(LeaseOutcome.ACTIVE), ctx([a_session(State.LAUNCHING)])) == Verdict()
        )
        assert leases.session_open(a_lease(LeaseOutcome.ACTIVE), ctx()) is None

    @pytest.mark.parametrize(("age", "looked_up"), [(POLICY.grace, True), (POLICY.grace - TICK, False)])
    def test_purchase_left_pending_after_the_grace(self, age, looked_up):
        lease = a_lease(LeaseOutcome.PENDING, activation_id=None, requested_at=NOW - age)
        verdict = leases.purchase_left_pending(lease, ctx())
        assert kinds(verdict) == (
            [(Kind.RESOLVE_PENDING_LEASE, Reason.PURCHASE_LEFT_PENDING)] if looked_up else []
        )

    def test_a_pending_lease_with_an_activation_is_not_left_pending(self):
        assert leases.purchase_left_pending(a_lease(LeaseOutcome.PENDING), ctx()) is None

    @pytest.mark.parametrize(
        "outcome", [LeaseOutcome.ACTIVE, LeaseOutcome.CODE_RECEIVED, LeaseOutcome.PENDING]
    )
    def test_session_ended_closes_the_rest(self, outcome):
        assert kinds(leases.session_ended(a_lease(outcome), ctx())) == [
            (Kind.CLOSE_LEASE, Reason.LEASE_ON_ENDED_SESSION)
        ]
