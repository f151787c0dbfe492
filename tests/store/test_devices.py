"""The device state table and the devices repository on the real database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from provisioner.store import DEVICE_ALLOWED, DEVICE_TERMINAL, DeviceState, IllegalDeviceTransition, State
from provisioner.store import devices as devrepo
from provisioner.store import repository as repo
from provisioner.store.device_states import check_device_transition
from tests.store.rows import make_device, make_session

D = DeviceState


class TestDeviceStateTable:
    def test_every_state_has_a_row_and_the_ends_are_terminal(self):
        assert set(DEVICE_ALLOWED) == set(DeviceState)
        assert DEVICE_TERMINAL == {D.RETIRED, D.FAILED}

    def test_a_claimed_device_never_goes_back_to_the_pool(self):
        with pytest.raises(IllegalDeviceTransition, match="claimed -> idle"):
            check_device_transition("d", D.CLAIMED, D.IDLE)

    @pytest.mark.parametrize(
        "path", [[D.BOOTING, D.IDLE, D.CLAIMED, D.RETIRED], [D.BOOTING, D.CLAIMED, D.FAILED]]
    )
    def test_pool_and_cold_boot_paths_are_allowed(self, path):
        for a, b in zip(path, path[1:], strict=False):
            check_device_transition("d", a, b)


class TestClaim:
    def test_claim_takes_an_idle_device_of_the_profile_and_binds_the_session(self, db):
        make_device(db, profile="stub")
        make_device(db, state=D.BOOTING)
        wanted = make_device(db)
        sid = make_session(db)
        row = devrepo.claim_idle_device(db, profile="stub-slow", host="local", session_id=sid)
        db.commit()
        assert row is not None and row.id == wanted and row.state == D.CLAIMED and row.claimed_at is not None
        assert repo.get_session(db, sid).device_id == wanted
        assert devrepo.session_device(db, sid).id == wanted

    def test_no_idle_device_means_none(self, db):
        make_device(db, state=D.BOOTING)
        make_device(db, host="tcp://other:2375")
        assert (
            devrepo.claim_idle_device(db, profile="stub-slow", host="local", session_id=make_session(db))
            is None
        )

    def test_concurrent_claims_never_share_a_device(self, db, db_sessions):
        idle = {make_device(db) for _ in range(3)}
        sessions = [make_session(db) for _ in range(10)]
        got: dict[str, str | None] = {}
        barrier = threading.Barrier(len(sessions))

        def claim(sid: str) -> None:
            with db_sessions.begin() as own:
                barrier.wait()
                row = devrepo.claim_idle_device(own, profile="stub-slow", host="local", session_id=sid)
                got[sid] = row.id if row is not None else None

        threads = [threading.Thread(target=claim, args=(sid,)) for sid in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        claimed = [d for d in got.values() if d is not None]
        assert len(got) == 10
        assert sorted(claimed) == sorted(idle)  # each idle device exactly once, the rest got none

    def test_retired_device_is_ended_and_cannot_be_claimed(self, db):
        device_id = make_device(db)
        devrepo.transition_device(db, device_id, D.RETIRED, reason="pool: too old")
        db.commit()
        row = devrepo.get_device(db, device_id)
        assert (row.state, row.reason) == ("retired", "pool: too old") and row.ended_at is not None
        assert (
            devrepo.claim_idle_device(db, profile="stub-slow", host="local", session_id=make_session(db))
            is None
        )

    def test_a_device_seen_down_is_not_claimed_and_is_again_once_up(self, db):
        device_id = make_device(db)
        devrepo.mark_down(db, device_id, "paused", at=db.scalar(select(func.now())))
        db.commit()
        assert (
            devrepo.claim_idle_device(db, profile="stub-slow", host="local", session_id=make_session(db))
            is None
        )
        devrepo.clear_down(db, device_id)
        db.commit()
        row = devrepo.claim_idle_device(db, profile="stub-slow", host="local", session_id=make_session(db))
        assert row is not None and row.id == device_id


class TestDown:
    def test_the_first_sighting_is_kept(self, db):
        device_id = make_device(db)
        first = db.scalar(select(func.now()))
        devrepo.mark_down(db, device_id, "paused", at=first)
        db.commit()
        devrepo.mark_down(db, device_id, "exited", at=first + timedelta(seconds=40))
        db.commit()
        row = devrepo.get_device(db, device_id)
        assert (row.down_since, row.down_condition, row.version) == (first, "paused", 2)
        devrepo.clear_down(db, device_id)
        db.commit()
        db.refresh(row)
        assert (row.down_since, row.down_condition) == (None, None)

    def test_a_session_state_awaiting_number_is_live(self):
        from provisioner.store import LIVE, PROVISIONING

        assert State.AWAITING_NUMBER in LIVE and State.AWAITING_NUMBER in PROVISIONING
