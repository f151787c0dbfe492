import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from provisioner.store import EventRow, IllegalTransition, LeaseOutcome, SessionRow, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.store.lease_states import IllegalLeaseTransition
from provisioner.store.leases import BoughtNumber
from provisioner.store.models import SESSION_ID_PATTERN, new_session_id
from provisioner.store.repository import StaleState


def make_session(db, **kw):
    row = repo.create_session(
        db, service="telegram", country="RU", actor="test", ttl=timedelta(minutes=5), **kw
    )
    db.commit()
    return row


class TestSessionIds:
    def test_ids_are_dns_safe_and_distinct(self):
        ids = {new_session_id() for _ in range(2000)}
        assert len(ids) == 2000
        assert all(re.match(SESSION_ID_PATTERN, i) for i in ids)


class TestTransitions:
    def test_create_writes_requested_event_and_expiry(self, db):
        row = make_session(db)
        assert row.state == State.REQUESTED
        assert row.expires_at > row.created_at
        events = repo.recent_events(db, row.id)
        assert [(e.from_state, e.to_state) for e in events] == [(None, "requested")]

    def test_transition_writes_event_and_bumps_version(self, db):
        row = make_session(db)
        repo.transition(
            db, row.id, State.NUMBER_ACQUIRED, reason="bought", actor="run-1", phone_number="+15550001"
        )
        db.commit()
        fresh = repo.get_session(db, row.id)
        assert fresh.state == "number_acquired" and fresh.version == 2 and fresh.phone_number == "+15550001"
        last = repo.recent_events(db, row.id)[-1]
        assert (last.from_state, last.to_state, last.reason, last.actor) == (
            "requested",
            "number_acquired",
            "bought",
            "run-1",
        )

    def test_illegal_transition_raises_and_writes_nothing(self, db):
        row = make_session(db)
        with pytest.raises(IllegalTransition, match="requested -> verified"):
            repo.transition(db, row.id, State.VERIFIED, reason="x", actor="t")
        db.rollback()
        assert repo.get_session(db, row.id).state == "requested"
        assert len(repo.recent_events(db, row.id)) == 1

    def test_event_is_rolled_back_with_the_state(self, db_sessions):
        with db_sessions.begin() as db:
            sid = repo.create_session(db, service="telegram", country="RU", actor="t").id
        with pytest.raises(RuntimeError), db_sessions.begin() as db:
            repo.transition(db, sid, State.FAILED, reason="boom", actor="t")
            raise RuntimeError("crash before commit")
        with db_sessions() as db:
            assert repo.get_session(db, sid).state == "requested"
            assert db.scalar(select(EventRow.id).where(EventRow.to_state == "failed")) is None

    def test_expected_state_guards_against_stale_callers(self, db):
        row = make_session(db)
        with pytest.raises(StaleState, match="expected state launching, found requested"):
            repo.transition(db, row.id, State.AWAITING_CODE, reason="x", actor="t", expected=State.LAUNCHING)

    def test_unknown_session(self, db):
        with pytest.raises(repo.SessionNotFound):
            repo.transition(db, "nosuchsession", State.FAILED, reason="x", actor="t")

    def test_two_connections_racing_have_exactly_one_winner(self, db_sessions):
        """Both racers read awaiting_code; one verifies, the other tries to cancel. The row lock
        makes the second see verified, where cancel is illegal."""
        with db_sessions.begin() as db:
            sid = repo.create_session(db, service="telegram", country="RU", actor="t").id
            for state in (State.NUMBER_ACQUIRED, State.LAUNCHING, State.AWAITING_CODE):
                repo.transition(db, sid, state, reason="setup", actor="t")

        barrier = threading.Barrier(2)
        results: dict[str, str] = {}

        def racer(target: State) -> None:
            try:
                with db_sessions.begin() as db:
                    seen = repo.get_session(db, sid).state  # both read before either writes
                    barrier.wait(timeout=10)
                    repo.transition(db, sid, target, reason=f"race from {seen}", actor=target.value)
                results[target.value] = "won"
            except IllegalTransition as exc:
                results[target.value] = f"lost: {exc}"

        threads = [threading.Thread(target=racer, args=(s,)) for s in (State.VERIFIED, State.CANCELLED)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        winners = [k for k, v in results.items() if v == "won"]
        assert len(results) == 2 and len(winners) == 1, results
        with db_sessions() as db:
            row = repo.get_session(db, sid)
            assert row.state == winners[0]
            assert row.version == 5  # created, 3 setup steps, one winning transition
            assert [e.to_state for e in repo.recent_events(db, sid)][-1] == winners[0]


class TestReconcilerQueries:
    def test_nonterminal_and_open_leases_one_query_each(self, db, database_url):
        from sqlalchemy import event

        from provisioner.store import get_engine

        live = make_session(db)
        done = make_session(db)
        repo.transition(db, done.id, State.FAILED, reason="x", actor="t")
        lease = lease_repo.record_lease_pending(
            db, live.id, provider="sms_man", service="3", country="1", attempt=1
        )
        closed = lease_repo.record_lease_pending(
            db, done.id, provider="sms_man", service="3", country="1", attempt=1
        )
        lease_repo.set_lease_outcome(db, closed.id, LeaseOutcome.FAILED)
        db.commit()

        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(get_engine(), "before_cursor_execute", listener)
        try:
            sessions = repo.list_nonterminal_sessions(db)
            leases = lease_repo.list_open_leases(db)
        finally:
            event.remove(get_engine(), "before_cursor_execute", listener)
        assert [s.id for s in sessions] == [live.id]
        assert [x.id for x in leases] == [lease.id]
        assert len(statements) == 2


class TestLeases:
    def test_pending_then_completed_then_closed(self, db):
        row = make_session(db)
        lease = lease_repo.record_lease_pending(
            db, row.id, provider="onlinesim", service="telegram", country="7", attempt=1
        )
        db.commit()
        assert lease.outcome == "pending" and lease.activation_id is None
        now = datetime.now(UTC)
        lease_repo.complete_lease(
            db, lease.id, BoughtNumber("123", "+79001234567", Decimal("12.5"), "RUB", now)
        )
        db.commit()
        assert lease_repo.open_lease_for_session(db, row.id).activation_id == "123"
        lease_repo.set_lease_outcome(db, lease.id, LeaseOutcome.FINISHED, provider_status="TZ_OVER_OK")
        db.commit()
        closed = lease_repo.leases_for_session(db, row.id)[0]
        assert closed.closed_at is not None and closed.price == Decimal("12.5")
        assert lease_repo.open_lease_for_session(db, row.id) is None

    def test_cancel_pending_stays_open(self, db):
        row = make_session(db)
        lease = lease_repo.record_lease_pending(
            db, row.id, provider="sms_activate", service="tg", country="0", attempt=1
        )
        lease_repo.complete_lease(
            db, lease.id, BoughtNumber("9", "+79001234567", Decimal(1), "RUB", datetime.now(UTC))
        )
        lease_repo.set_lease_outcome(db, lease.id, LeaseOutcome.CANCEL_PENDING, retry_after=datetime.now(UTC))
        db.commit()
        assert [x.id for x in lease_repo.list_open_leases(db)] == [lease.id]
        assert lease_repo.leases_for_session(db, row.id)[0].closed_at is None

    def test_illegal_outcome_change_raises_and_changes_nothing(self, db):
        row = make_session(db)
        lease = lease_repo.record_lease_pending(
            db, row.id, provider="sms_man", service="tg", country="0", attempt=1
        )
        lease_repo.set_lease_outcome(db, lease.id, LeaseOutcome.FAILED, provider_status="no numbers")
        db.commit()
        with pytest.raises(IllegalLeaseTransition, match="failed -> active"):
            lease_repo.complete_lease(
                db, lease.id, BoughtNumber("1", "+79001234567", Decimal(1), "RUB", datetime.now(UTC))
            )
        db.rollback()
        assert lease_repo.leases_for_session(db, row.id)[0].outcome == LeaseOutcome.FAILED

    def test_unknown_purchase_stamps_its_call_end_and_counts_lookups(self, db):
        row = make_session(db)
        lease = lease_repo.record_lease_pending(
            db, row.id, provider="sms_man", service="tg", country="0", attempt=1
        )
        lease_repo.set_lease_outcome(db, lease.id, LeaseOutcome.UNKNOWN, provider_status="HTTP 502")
        lease_repo.set_lease_outcome(
            db, lease.id, LeaseOutcome.UNKNOWN, attention="cannot list", count_retry=True
        )
        db.commit()
        unknown = lease_repo.leases_for_session(db, row.id)[0]
        assert unknown.call_ended_at is not None and unknown.closed_at is None and unknown.retries == 1
        assert [x.id for x in lease_repo.list_open_leases(db)] == [lease.id]
        assert [x.id for x in lease_repo.leases_needing_attention(db)] == [lease.id]
        lease_repo.set_lease_outcome(db, lease.id, LeaseOutcome.FAILED, provider_status="none sold")
        db.commit()
        assert lease_repo.leases_needing_attention(db) == [] and lease_repo.list_open_leases(db) == []


def test_each_test_starts_clean(db):
    assert db.scalar(select(SessionRow.id)) is None
