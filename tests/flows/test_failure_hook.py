"""The provision flow's failure hook: a run that failed on a transient error (the database away
longer than the tasks' retries) before anything was bought leaves its session to reconciliation,
which runs it again; anything else is undone at once."""

from __future__ import annotations

import pytest
from prefect.states import Failed
from sqlalchemy.exc import OperationalError

from flows.provision import _run_again_later
from provisioner.store import State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo

pytestmark = pytest.mark.docker

DB_AWAY = OperationalError("SELECT 1", {}, Exception("connection failed: Connection refused"))


def session_in(deps, *steps: State, submissions: int = 1) -> str:
    with deps.sessions.begin() as db:
        sid = repo.create_session(db, service="telegram", country="RU", actor="test").id
        for step in steps:
            repo.transition(db, sid, step, reason="test", actor="test")
        repo.get_session(db, sid).submissions = submissions
    return sid


def test_a_transient_failure_before_buying_is_left_to_reconciliation(provisioner_env):
    deps = provisioner_env
    launching = session_in(deps, State.LAUNCHING)
    assert _run_again_later(deps, launching, Failed(data=DB_AWAY))
    # Not transient: undone at once.
    assert not _run_again_later(deps, launching, Failed(data=ValueError("a bug")))
    # Its one re-submission already spent: undone at once (reconciliation would not run it again).
    assert not _run_again_later(deps, session_in(deps, State.LAUNCHING, submissions=2), Failed(data=DB_AWAY))


def test_a_transient_failure_after_buying_is_undone(provisioner_env):
    deps = provisioner_env
    bought = session_in(deps, State.NUMBER_ACQUIRED, State.LAUNCHING, State.AWAITING_CODE)
    assert not _run_again_later(deps, bought, Failed(data=DB_AWAY))
    # A purchase recorded as pending (its outcome unknown) counts as bought.
    pending = session_in(deps, State.LAUNCHING)
    with deps.sessions.begin() as db:
        lease_repo.record_lease_pending(
            db, pending, provider="sms_activate", service="tg", country="0", attempt=1
        )
    assert not _run_again_later(deps, pending, Failed(data=DB_AWAY))
