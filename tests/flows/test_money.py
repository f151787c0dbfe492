"""Money safety on the real stack: each simulator fault mode, checked against the simulator's ledger.

For every mode: the purchases the simulator made for the session equal the leases recorded with an
activation, each lease's recorded outcome equals what the simulator did, and after release plus
one reconcile pass nothing is open and nothing unrefunded (or, where the provider cannot list its
activations, the unknown purchase is flagged for a person).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from flows.provision import ProvisionResult, provision_session
from flows.reconcile import reconcile_sessions
from flows.release import release_session
from providers.errors import PurchaseUnknown
from provisioner.steps import numbers
from provisioner.steps.purchases import Resolution, mark_unknown, resolve_unknown
from provisioner.steps.request import ProvisionRequest
from provisioner.store import LeaseOutcome, LeaseRow, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.support import rent, session, wait_for

pytestmark = pytest.mark.docker

# What the simulator's ledger says happened to an activation -> the outcome we must have recorded.
SIM_TO_OUTCOME = {"finish": LeaseOutcome.FINISHED, "refund": LeaseOutcome.CANCELLED}


def leases(deps, session_id) -> list[LeaseRow]:
    with deps.sessions() as db:
        return lease_repo.leases_for_session(db, session_id)


def assert_ledger_matches(deps, sim, session_id: str, *, unknown: int = 0) -> None:
    """Purchases == leases recorded with an activation (plus ``unknown`` lost ones); each recorded
    outcome == what the simulator did; an activation still open has an open lease."""
    ledger = sim.ledger()
    rows = leases(deps, session_id)
    bought = {r.activation_id: r for r in rows if r.activation_id}
    purchased = [e.activation_id for e in ledger.purchases]
    assert len(purchased) == len(bought) + unknown, (purchased, [(r.outcome, r.activation_id) for r in rows])
    assert set(bought) <= set(purchased)
    closed = {e.activation_id: e.kind for e in ledger.entries if e.kind != "purchase"}
    for activation_id, row in bought.items():
        if activation_id in closed:
            assert row.outcome == SIM_TO_OUTCOME[closed[activation_id]], (activation_id, row.outcome)
        else:
            assert activation_id in ledger.open and row.outcome not in SIM_TO_OUTCOME.values()
    assert len([r for r in rows if r.outcome == LeaseOutcome.UNKNOWN]) == unknown


def release_and_reconcile(deps, sid: str) -> None:
    release_session(session_id=sid)
    assert session(deps, sid).state == State.RELEASED
    summary = reconcile_sessions()
    assert summary.ran and summary.failed == 0, summary.actions


def provision(**request) -> ProvisionResult:
    result = provision_session(request=ProvisionRequest(**request))
    assert isinstance(result, ProvisionResult) and result.state == State.VERIFIED, result
    return result


class TestPurchaseReplyLost:
    @pytest.mark.parametrize(
        "fault",
        [{"kind": "http", "status": 502}, {"kind": "slow", "delay_s": 4.0}],  # the client waits 3 s
        ids=["sold-then-502", "sold-then-stall"],
    )
    def test_listed_purchase_is_adopted_and_one_number_serves_the_session(self, provisioner_env, sim, fault):
        deps = provisioner_env
        sim.set_sms_delay(0.5)
        sim.inject(protocol="sms_activate", action="getNumber", execute=True, **fault)
        result = provision(providers=["sms_activate", "onlinesim"])
        assert result.provider == "sms_activate"
        assert sim.purchases == 1  # never bought twice
        [lease] = leases(deps, result.session_id)
        assert lease.outcome == LeaseOutcome.FINISHED and lease.provider_status == "finished"
        assert lease.activation_id == sim.ledger().purchases[0].activation_id
        assert_ledger_matches(deps, sim, result.session_id)
        release_and_reconcile(deps, result.session_id)
        assert sim.ledger().settled and sim.ledger().open == []

    def test_without_listing_no_second_purchase_there_and_the_lease_is_flagged(self, provisioner_env, sim):
        deps = provisioner_env
        sim.set_sms_delay(0.5)
        sim.configure(sms_activate_lists_activations=False)
        sim.inject("http", status=502, protocol="sms_activate", action="getNumber", execute=True)
        result = provision(providers=["sms_activate", "onlinesim"])
        assert result.provider == "onlinesim"  # fell back; nothing more bought at sms_activate
        buys = [action for protocol, action, _ in sim.calls if protocol == "sms_activate"]
        assert buys.count("getNumber") == 1
        unknown, used = leases(deps, result.session_id)
        assert (unknown.provider, unknown.outcome, unknown.activation_id) == ("sms_activate", "unknown", None)
        assert "cannot list" in unknown.attention and used.outcome == LeaseOutcome.FINISHED
        assert_ledger_matches(deps, sim, result.session_id, unknown=1)

        release_and_reconcile(deps, result.session_id)
        with deps.sessions() as db:
            flagged = lease_repo.leases_needing_attention(db)
        assert [(x.id, x.outcome) for x in flagged] == [(unknown.id, LeaseOutcome.UNKNOWN)]
        assert len(sim.ledger().open) == 1  # the lost sms_activate number: a person closes it

    def test_unknown_lease_gives_up_after_bounded_lookups(self, provisioner_env, sim, monkeypatch):
        deps = provisioner_env
        monkeypatch.setattr(deps.settings.reconcile, "lease_retry_s", 0.01)
        monkeypatch.setattr(deps.settings.reconcile, "lease_retries", 2)
        sim.configure(sms_activate_lists_activations=False)
        sim.inject("http", status=502, protocol="sms_activate", action="getNumber", execute=True)
        state = provision_session(request=ProvisionRequest(providers=["sms_activate"]), return_state=True)
        assert state.is_failed() and sim.purchases == 1
        [lease] = leases(deps, _newest(deps))
        assert lease.outcome == LeaseOutcome.UNKNOWN
        results = []
        for _ in range(3):
            wait_for(lambda: _due(deps, lease.id), timeout=10)
            results += [
                r["result"] for r in reconcile_sessions().actions if r["action"] == "resolve_pending_lease"
            ]
            if _outcome(deps, lease.id) == LeaseOutcome.NEEDS_ATTENTION:
                break
        assert _outcome(deps, lease.id) == LeaseOutcome.NEEDS_ATTENTION
        assert results and results[-1].startswith("gave_up")
        assert reconcile_sessions().actions == []  # not retried forever
        assert sim.purchases == 1


class TestCancel:
    def test_refused_8_and_minus_1_never_sends_6_and_reconciliation_retries_it(
        self, provisioner_env, sim, monkeypatch
    ):
        """The first number gets no code; its cancel is refused (cancel_pending, never a 6); the
        second number is verified; once the provider accepts cancels again, a reconcile pass on the
        live session refunds the first."""
        deps = provisioner_env
        monkeypatch.setattr(deps.settings.reconcile, "lease_retry_s", 0.01)
        sim.configure(sms_activate_cancel_statuses=())
        helper = threading.Thread(target=_deliver_to_second_number, args=(sim,), daemon=True)
        helper.start()
        result = provision(providers=["sms_activate"], code_timeout_s=1, number_attempts=2)
        helper.join(timeout=5)
        first, second = leases(deps, result.session_id)
        assert (first.outcome, second.outcome) == (LeaseOutcome.CANCEL_PENDING, LeaseOutcome.FINISHED)
        assert "6" not in _set_statuses(sim, first.activation_id)
        assert_ledger_matches(deps, sim, result.session_id)

        sim.configure(sms_activate_cancel_statuses=("8", "-1"))
        wait_for(lambda: _due(deps, first.id), timeout=10)
        summary = reconcile_sessions()
        assert [(r["action"], r["result"]) for r in summary.actions] == [("close_lease", "cancelled")]
        assert session(deps, result.session_id).state == State.VERIFIED  # the live session is untouched
        assert_ledger_matches(deps, sim, result.session_id)
        release_and_reconcile(deps, result.session_id)
        assert sim.ledger().settled

    def test_refused_for_good_becomes_needs_attention(self, provisioner_env, sim, monkeypatch):
        deps = provisioner_env
        monkeypatch.setattr(deps.settings.reconcile, "lease_retry_s", 0.01)
        monkeypatch.setattr(deps.settings.reconcile, "lease_retries", 2)
        sim.configure(sms_activate_cancel_statuses=())
        state = provision_session(
            request=ProvisionRequest(providers=["sms_activate"], code_timeout_s=0.5, number_attempts=1),
            return_state=True,
        )
        assert state.is_failed()
        [lease] = leases(deps, _newest(deps))
        assert lease.outcome == LeaseOutcome.CANCEL_PENDING
        for _ in range(3):
            wait_for(lambda: _due(deps, lease.id), timeout=10)
            reconcile_sessions()
            if _outcome(deps, lease.id) == LeaseOutcome.NEEDS_ATTENTION:
                break
        with deps.sessions() as db:
            row = db.get_one(LeaseRow, lease.id)
        assert row.outcome == LeaseOutcome.NEEDS_ATTENTION and "by hand" in row.attention and row.retries == 2
        assert reconcile_sessions().actions == []  # not retried forever
        assert "6" not in _set_statuses(sim, lease.activation_id)
        assert sim.ledger().finishes == []

    def test_code_arriving_just_before_the_cancel_is_finished_and_kept(self, provisioner_env, sim):
        deps = provisioner_env
        sid, lease_id, activation_id = rent(deps)
        sim.deliver(activation_id, "777111")
        assert numbers.cancel_number(deps, lease_id) == LeaseOutcome.FINISHED
        [lease] = leases(deps, sid)
        assert lease.outcome == LeaseOutcome.FINISHED and lease.price == sim.ledger().finishes[0].amount
        assert session(deps, sid).verification_code == "777111"
        assert sim.ledger().settled and len(sim.ledger().finishes) == 1

    def test_two_actors_closing_one_lease_at_once_both_succeed(self, provisioner_env, sim, monkeypatch):
        """The provision flow and reconciliation may cancel the same number at once (a session
        orphaned while its flow waits): whoever records second accepts the first one's record."""
        deps = provisioner_env
        rented = rent(deps)
        client = deps.provider("sms_activate")
        real_cancel = type(client).cancel

        def cancel_then_the_other_actor_records_it(self, lease):
            real_cancel(self, lease)
            with deps.sessions.begin() as db:  # the other actor, between our call and our record
                lease_repo.set_lease_outcome(
                    db, rented.lease_id, LeaseOutcome.CANCELLED, provider_status="cancelled"
                )

        monkeypatch.setattr(type(client), "cancel", cancel_then_the_other_actor_records_it)
        assert numbers.cancel_number(deps, rented.lease_id) == LeaseOutcome.CANCELLED
        assert _outcome(deps, rented.lease_id) == LeaseOutcome.CANCELLED
        assert [e.activation_id for e in sim.ledger().refunds] == [rented.activation_id]
        assert sim.ledger().settled


class TestPollingNoise:
    def test_one_garbage_status_reply_is_not_fatal(self, provisioner_env, sim):
        deps = provisioner_env
        sim.inject("malformed", protocol="sms_activate", action="getStatus", times=1)
        helper = threading.Thread(target=_deliver_after_polls, args=(sim, 3), daemon=True)
        helper.start()
        result = provision(providers=["sms_activate"], code_timeout_s=20)
        helper.join(timeout=5)
        assert sim.purchases == 1 and result.code == "515151"
        assert_ledger_matches(deps, sim, result.session_id)

    def test_a_long_run_of_garbage_ends_the_wait_and_refunds(self, provisioner_env, sim):
        deps = provisioner_env
        sim.inject("malformed", protocol="sms_activate", action="getStatus", times=None)
        state = provision_session(
            request=ProvisionRequest(providers=["sms_activate"], code_timeout_s=60, number_attempts=1),
            return_state=True,
        )
        assert state.is_failed()
        assert "unclear replies in a row" in (session(deps, _newest(deps)).last_error or "")
        assert_ledger_matches(deps, sim, _newest(deps))
        assert sim.ledger().settled


def _newest(deps) -> str:
    with deps.sessions() as db:
        return repo.list_sessions(db, limit=1)[0].id


def _outcome(deps, lease_id: int) -> str:
    with deps.sessions() as db:
        return db.get_one(LeaseRow, lease_id).outcome


def _due(deps, lease_id: int) -> bool:
    from sqlalchemy import func, select

    with deps.sessions() as db:
        row = db.get_one(LeaseRow, lease_id)
        return row.retry_after is None or row.retry_after <= db.scalar(select(func.now()))


def _set_statuses(sim, activation_id: str) -> list[str]:
    return [
        p["status"] for _, action, p in sim.calls if action == "setStatus" and p.get("id") == activation_id
    ]


def _deliver_to_second_number(sim) -> None:
    wait_for(lambda: len(sim.ledger().purchases) >= 2, timeout=60)
    sim.deliver(sim.ledger().purchases[1].activation_id, "424242")


def _deliver_after_polls(sim, polls: int) -> None:
    wait_for(lambda: [a for _, a, _ in sim.calls].count("getStatus") >= polls, timeout=30)
    sim.deliver(sim.ledger().purchases[0].activation_id, "515151")


class TestLookup:
    """provisioning.purchases.resolve_unknown against the simulator's listing, no flow around it."""

    def _unknown_lease(self, deps, sim, *, sold: bool) -> tuple[str, int]:
        with deps.sessions.begin() as db:
            sid = repo.create_session(db, service="tg", country="0", actor="test").id
            lease_id = lease_repo.record_lease_pending(
                db, sid, provider="sms_activate", service="tg", country="0", attempt=1
            ).id
        if sold:
            sim.inject("http", status=502, protocol="sms_activate", action="getNumber", execute=True)
            with pytest.raises(PurchaseUnknown) as caught:
                deps.provider("sms_activate").acquire("tg", "0", None)
            mark_unknown(deps, lease_id, caught.value)
        else:
            with deps.sessions.begin() as db:
                lease_repo.set_lease_outcome(db, lease_id, LeaseOutcome.UNKNOWN, provider_status="HTTP 502")
        return sid, lease_id

    def test_two_lost_purchases_of_the_same_kind_are_never_guessed(self, provisioner_env, sim):
        deps = provisioner_env
        _, first = self._unknown_lease(deps, sim, sold=True)
        _, second = self._unknown_lease(deps, sim, sold=True)
        for lease_id in (first, second):
            resolved = resolve_unknown(deps, lease_id)
            assert resolved.resolution == Resolution.UNDECIDED and "2 unknown open" in resolved.detail
            assert _outcome(deps, lease_id) == LeaseOutcome.UNKNOWN
        assert len(sim.ledger().open) == 2 and sim.purchases == 2

    def test_an_activation_known_to_another_lease_is_not_adopted(self, provisioner_env, sim):
        deps = provisioner_env
        rent(deps)  # another session's number
        _, lease_id = self._unknown_lease(deps, sim, sold=False)
        resolved = resolve_unknown(deps, lease_id)
        assert resolved.resolution == Resolution.NONE_SOLD
        assert _outcome(deps, lease_id) == LeaseOutcome.FAILED and sim.purchases == 1

    def test_the_one_lost_purchase_is_adopted_with_its_price(self, provisioner_env, sim):
        deps = provisioner_env
        _, lease_id = self._unknown_lease(deps, sim, sold=True)
        assert resolve_unknown(deps, lease_id).resolution == Resolution.ADOPTED
        with deps.sessions() as db:
            row = db.get_one(LeaseRow, lease_id)
        [purchase] = sim.ledger().purchases
        assert (row.outcome, row.activation_id, row.price) == (
            LeaseOutcome.ACTIVE,
            purchase.activation_id,
            purchase.amount,
        )

    def test_an_unexplained_activation_outside_the_window_is_not_taken_for_none_sold(
        self, provisioner_env, sim
    ):
        deps = provisioner_env
        deps.provider("sms_activate").acquire("tg", "0", None)  # bought now, recorded nowhere
        _, lease_id = self._unknown_lease(deps, sim, sold=False)
        with deps.sessions.begin() as db:  # this lease's purchase call was an hour from now
            row = db.get_one(LeaseRow, lease_id)
            row.requested_at = row.requested_at + timedelta(hours=1)
            row.call_ended_at = row.requested_at
        resolved = resolve_unknown(deps, lease_id)
        assert resolved.resolution == Resolution.UNDECIDED and "none inside" in resolved.detail
        assert _outcome(deps, lease_id) == LeaseOutcome.UNKNOWN and sim.purchases == 1
