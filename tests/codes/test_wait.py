"""Recording a code exactly once with a NOTIFY, and a flow's wait on the database (provisioning.codes)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from providers.base import Expired
from provisioner.steps import codes
from provisioner.store import LeaseOutcome, LeaseRow
from provisioner.store import codes as store_codes
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.codes.support import polls_at, polls_far_apart
from tests.support import rent


def status_checks(sim, activation_id: str) -> int:
    return sum(
        1 for _, action, params in sim.calls if action == "getStatus" and params.get("id") == activation_id
    )


def beat(deps, provider: str) -> None:
    with deps.sessions.begin() as db:
        store_codes.beat(db, provider, watcher="test:1", mode="each")


class TestRecordCode:
    def test_second_record_of_the_same_code_writes_nothing_and_the_first_notifies(self, codes_env):
        deps = codes_env
        sid, lease_id, activation_id = rent(deps)
        with codes.CodeListener(codes.plain_dsn(deps.settings.database.url), lease_id) as listener:
            assert codes.record_code(deps, lease_id, "111222", via="webhook", actor="test") is True
            assert listener.wait(5.0) is True
            assert codes.record_code(deps, lease_id, "111222", via="watcher", actor="test") is False
            assert listener.wait(0.3) is False  # no second notification: the duplicate wrote nothing
        with deps.sessions() as db:
            lease = db.get_one(LeaseRow, lease_id)
            assert (lease.outcome, lease.code) == (LeaseOutcome.CODE_RECEIVED, "111222")
            assert lease.code_at is not None
            assert repo.get_session(db, sid).verification_code == "111222"
            reasons = [e.reason for e in repo.recent_events(db, sid) if "code received" in e.reason]
        assert reasons == [f"code received on sms_activate:{activation_id} (webhook)"]

    def test_code_for_an_ended_lease_is_ignored(self, codes_env):
        deps = codes_env
        sid, lease_id, _ = rent(deps)
        with deps.sessions.begin() as db:
            lease_repo.set_lease_outcome(db, lease_id, LeaseOutcome.CANCELLED)
        assert codes.record_code(deps, lease_id, "333444", via="webhook", actor="test") is False
        with deps.sessions() as db:
            assert db.get_one(LeaseRow, lease_id).code is None
            assert repo.get_session(db, sid).verification_code is None

    def test_after_another_code_is_asked_only_a_different_code_is_recorded(self, codes_env):
        deps = codes_env
        _, lease_id, _ = rent(deps)
        assert codes.record_code(deps, lease_id, "100001", via="watcher", actor="test")
        with deps.sessions.begin() as db:
            assert store_codes.reopen_for_another_code(db, lease_id)
        assert (
            codes.record_code(deps, lease_id, "100001", via="webhook", actor="test") is False
        )  # late duplicate
        assert codes.record_code(deps, lease_id, "200002", via="watcher", actor="test") is True
        with deps.sessions() as db:
            assert db.get_one(LeaseRow, lease_id).code == "200002"


class TestWaitForCode:
    def test_with_a_live_watcher_the_wait_wakes_on_the_write_and_never_asks_the_provider(
        self, codes_env, sim, monkeypatch
    ):
        deps = polls_far_apart(monkeypatch)
        sid, lease_id, activation_id = rent(deps)
        beat(deps, "sms_activate")
        sim.calls.clear()
        woke: dict[str, object] = {}

        def wait() -> None:
            woke["result"] = codes.wait_for_code(deps, sid, lease_id, timeout_s=10, actor="test")
            woke["at"] = time.monotonic()

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)  # let it settle into a wait (the write must wake it, not a timeout)
        assert codes.record_code(deps, lease_id, "654321", via="watcher", actor="test")
        written = time.monotonic()
        waiter.join(timeout=5)
        assert woke["result"] == codes.CodeResult("654321", "code received")
        assert woke["at"] - written < 1.0
        assert status_checks(sim, activation_id) == 0

    def test_without_a_watcher_the_wait_polls_its_own_lease(self, codes_env, sim):
        deps = codes_env
        sid, lease_id, activation_id = rent(deps)
        sim.deliver(activation_id, "777888")
        result = codes.wait_for_code(deps, sid, lease_id, timeout_s=10, actor="test")
        assert result == codes.CodeResult("777888", "code received")
        assert status_checks(sim, activation_id) >= 1
        with deps.sessions() as db:
            reasons = [e.reason for e in repo.recent_events(db, sid)]
        assert f"code received on sms_activate:{activation_id} (poll)" in reasons

    def test_without_a_watcher_a_code_in_the_first_seconds_is_seen_within_a_poll(
        self, codes_env, sim, monkeypatch
    ):
        deps = polls_at(monkeypatch, initial_s=1, max_s=10)  # the defaults
        sid, lease_id, activation_id = rent(deps)
        done: dict[str, object] = {}

        def wait() -> None:
            done["result"] = codes.wait_for_code(deps, sid, lease_id, timeout_s=30, actor="test")
            done["at"] = time.monotonic()

        waiter = threading.Thread(target=wait)
        waiter.start()
        # Past the fourth poll (~4.75 s in), a backoff from the first poll would wait 3.4 s more.
        deadline = time.monotonic() + 15
        while status_checks(sim, activation_id) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status_checks(sim, activation_id) >= 4
        sim.deliver(activation_id, "246802")
        delivered = time.monotonic()
        waiter.join(timeout=10)
        assert done["result"] == codes.CodeResult("246802", "code received")
        assert done["at"] - delivered < 2.0

    def test_a_stale_watcher_heartbeat_counts_as_no_watcher(self, codes_env, sim):
        deps = codes_env
        sid, lease_id, activation_id = rent(deps)
        beat(deps, "sms_activate")
        with deps.sessions.begin() as db:
            db.execute(text("UPDATE code_watchers SET beat_at = now() - interval '1 hour'"))
        assert codes.watcher_alive(deps, "sms_activate") is False
        sim.deliver(activation_id, "135790")
        result = codes.wait_for_code(deps, sid, lease_id, timeout_s=10, actor="test")
        assert result.code == "135790"
        assert status_checks(sim, activation_id) >= 1

    def test_timeout_checks_the_provider_once_more_even_with_a_watcher(self, codes_env, sim):
        deps = codes_env
        sid, lease_id, activation_id = rent(deps)
        beat(deps, "sms_activate")
        sim.calls.clear()
        result = codes.wait_for_code(deps, sid, lease_id, timeout_s=1, actor="test")
        assert result == codes.CodeResult(None, "no code within 1 s")
        assert status_checks(sim, activation_id) == 1
        with deps.sessions() as db:
            assert db.get_one(LeaseRow, lease_id).outcome == LeaseOutcome.ACTIVE

    def test_a_lease_ended_by_the_provider_ends_the_wait(self, codes_env, sim):
        deps = codes_env
        sid, lease_id, _ = rent(deps)
        beat(deps, "sms_activate")
        threading.Timer(
            0.3,
            lambda: codes.record_result(
                deps, lease_id, Expired("NO_ACTIVATION"), via="watcher", actor="test"
            ),
        ).start()
        result = codes.wait_for_code(deps, sid, lease_id, timeout_s=10, actor="test")
        assert result == codes.CodeResult(None, "the provider ended the rental (NO_ACTIVATION)")


class TestPollDelay:
    def test_every_initial_s_until_the_fast_window_ends_then_half_the_time_past_it_capped(self):
        def delay(waited_s: float) -> float:
            return codes.poll_delay(waited_s, initial_s=1.0, max_s=10.0, fast_for_s=20.0)

        assert [delay(t) for t in (0.0, 3.0, 19.99, 20.0)] == [1.0, 1.0, 1.0, 1.0]
        assert [delay(t) for t in (22.0, 30.0, 37.0)] == [2.0, 6.0, 9.5]
        assert [delay(t) for t in (38.0, 60.0, 3600.0)] == [10.0, 10.0, 10.0]

    def test_the_default_fast_window_is_20_s(self):
        assert codes.poll_delay(19.9, initial_s=1.0, max_s=10.0) == 1.0
        assert codes.poll_delay(24.0, initial_s=1.0, max_s=10.0) == 3.0

    def test_an_initial_wait_above_the_max_is_capped(self):
        assert codes.poll_delay(0.0, initial_s=2.0, max_s=1.5) == 1.5
