"""Faults on the deployed path: a real `prefect server` with `provisioner deploy` applied, process
workers, the gateway, PostgreSQL, Docker and the provider simulator. The store stopped 20 s and a
verified device paused 30 s are faults of test_recovery.py's run, with the same checks; the worker
killed here takes a reconcile pass with it, which needs passes the test drives itself.

Each test asserts, after its fault: every accepted request reached its outcome (verified, or ended
with a reason) within two reconcile passes; no provision run is left alive in Prefect; no launch
or reconcile slot is held; no container and no number leaked (the simulator's ledger is settled
after release); the gateway answered every request it was sent (none hung past 10 s or dropped)
and none of its answers was a 500 or a 502."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from provisioner.store import PROVISIONING, TERMINAL, SessionRow, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.harness.deployed import HEARTBEAT_S, HEARTBEAT_TIMEOUT_S, AnswerLog
from tests.support import wait_for

pytestmark = pytest.mark.docker

LAUNCH_LEASE_S = 60  # provisioning.launch.LAUNCH_LEASE_S
OUTCOMES = {s.value for s in TERMINAL | {State.VERIFIED}}
MIN_ANSWERS = 10  # per polled path, over a fault test (each runs 30 s or more)


def states(sessions, ids) -> dict[str, str]:
    with sessions() as db:
        return {sid: repo.get_session(db, sid).state for sid in ids}


def post_burst(client, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        reply = client.post("/sessions", json={"providers": ["sms_activate"], "code_timeout_s": 30})
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["session_id"])
    return ids


def all_reached_an_outcome(sessions, ids):
    current = states(sessions, ids)
    return current if set(current.values()) <= OUTCOMES else None


def release_all(client, sessions, ids) -> None:
    for sid in ids:
        assert client.delete(f"/sessions/{sid}").status_code in (200, 202)
    wait_for(lambda: set(states(sessions, ids).values()) <= {s.value for s in TERMINAL}, timeout=90)


def assert_nothing_left(prefect, runtime, sim, sessions, ids, answers) -> None:
    assert prefect.alive_provision_runs() == []
    assert prefect.reconcile_slots_in_use() == 0
    assert [c.name for c in runtime.list_managed()] == []
    ledger = sim.ledger()
    assert ledger.settled, ledger
    with sessions() as db:
        open_leases = [x.id for x in lease_repo.list_open_leases(db) if x.session_id in ids]
    assert open_leases == []
    assert answers.server_errors == {}, answers.by_path
    assert answers.errors == {}, answers.errors  # every request was answered, none hung or dropped
    fewest = min(answers.answered(path) for path in answers.paths())
    print(f"answers: {fewest} at least per path; {dict(answers.codes)}")
    assert fewest >= MIN_ANSWERS, answers.by_path


def expired_verified_session(sessions) -> str:
    with sessions.begin() as db:
        sid = repo.create_session(db, service="telegram", country="RU", actor="test", ttl=timedelta(0)).id
        for step in (State.NUMBER_ACQUIRED, State.LAUNCHING, State.AWAITING_CODE, State.VERIFIED):
            repo.transition(db, sid, step, reason="test", actor="test")
    return sid


def test_delete_before_the_run_started_cancels_it_in_prefect(
    prefect, start_worker, gateway_for, db_sessions, database_url, runtime_factory, sim
):
    """No worker runs yet: the accepted run waits Scheduled. The session is readable at once, and
    DELETE cancels the run in Prefect and ends the session. A worker started afterwards runs the
    next session's provision but never the cancelled run: one number bought in all."""
    runtime = runtime_factory()
    client = gateway_for(db_sessions, runtime)
    created = client.post("/sessions", json={"providers": ["sms_activate"]})
    assert created.status_code == 202
    sid, run_id = created.json()["session_id"], created.json()["flow_run_id"]
    assert client.get(f"/sessions/{sid}").json()["state"] == "requested"
    assert prefect.state(run_id) == "SCHEDULED"
    deleted = client.delete(f"/sessions/{sid}")
    assert deleted.status_code == 200 and deleted.json()["state"] == "cancelled"
    assert prefect.state(run_id) == "CANCELLED"
    again = client.delete(f"/sessions/{sid}")
    assert again.status_code == 200 and again.json() == {
        "session_id": sid,
        "state": "cancelled",
        "flow_run_id": None,
    }

    start_worker(database_url, runtime)
    sim.set_sms_delay(0.5)
    second = post_burst(client, 1)[0]  # proves the worker polls and runs what is scheduled
    wait_for(lambda: states(db_sessions, [second])[second] == State.VERIFIED, timeout=90)
    assert prefect.state(run_id) == "CANCELLED"
    assert states(db_sessions, [sid])[sid] == State.CANCELLED
    assert sim.purchases == 1
    release_all(client, db_sessions, [second])


def test_worker_and_its_flow_runs_killed_mid_burst(
    prefect, start_worker, gateway_for, db_sessions, database_url, runtime_factory, sim
):
    runtime = runtime_factory()
    worker = start_worker(database_url, runtime)
    client = gateway_for(db_sessions, runtime)
    sim.set_sms_delay(6.0)
    # A reconcile pass that is mid-way when the worker dies: it waits for a row the test holds.
    blocker = expired_verified_session(db_sessions)
    holder = db_sessions()
    holder.execute(select(SessionRow).where(SessionRow.id == blocker).with_for_update())
    held_run = prefect.start_reconcile()
    ids = post_burst(client, 4)
    paths = [f"/sessions/{sid}" for sid in ids] + [f"/vnc/{sid}/vnc.html" for sid in ids] + ["/readyz"]
    with AnswerLog(client, lambda: paths) as answers:
        wait_for(lambda: prefect.state(held_run) == "RUNNING", timeout=60)
        # Prefect knows it is alive: its first heartbeat event is in (the automation starts there).
        wait_for(lambda: prefect.heartbeats(held_run) >= 1, timeout=60, interval=1)
        busy = PROVISIONING - {State.REQUESTED}
        wait_for(lambda: sum(State(s) in busy for s in states(db_sessions, ids).values()) >= 2, timeout=60)

        killed = worker.kill()
        killed_at = time.monotonic()
        assert killed, "the worker had flow-run processes"
        holder.rollback()
        holder.close()
        start_worker(database_url, runtime)

        # The killed pass holds the reconcile deployment's slot (new passes are Cancelled) until
        # Prefect's heartbeat automation marks it Crashed: within one heartbeat timeout.
        bound = HEARTBEAT_S + HEARTBEAT_TIMEOUT_S + 15
        first_pass = None
        while first_pass is None and time.monotonic() - killed_at < bound:
            if prefect.reconcile_pass() == "COMPLETED":
                first_pass = time.monotonic() - killed_at
        print(f"first reconcile pass after the kill got the slot {first_pass} s after it")
        assert first_pass is not None, (
            f"no reconcile pass got the slot within {bound} s of the kill; the killed pass is "
            f"{prefect.run(held_run)['state']}; heartbeats seen: {prefect.heartbeats(held_run)}"
        )
        assert prefect.state(held_run) == "CRASHED"
        assert "heartbeat" in prefect.run(held_run)["state"]["message"]

        assert prefect.reconcile_pass() == "COMPLETED"  # the second pass
        outcome = wait_for(
            lambda: all_reached_an_outcome(db_sessions, ids),
            timeout=90,
            describe=lambda: states(db_sessions, ids),
        )
        with db_sessions() as db:
            for sid, state in outcome.items():
                if state != State.VERIFIED:
                    assert repo.get_session(db, sid).last_error, f"{sid} ended {state} without a reason"

        # Leases of the killed launches expire (60 s, renewed only by a live holder).
        wait_for(
            lambda: prefect.launch_slots_in_use(runtime.instance_id) == 0,
            timeout=max(1.0, LAUNCH_LEASE_S + 5 - (time.monotonic() - killed_at)),
        )

        release_all(client, db_sessions, [*ids, blocker])
        assert prefect.reconcile_pass() == "COMPLETED"  # strays and leftovers of the killed runs
        wait_for(
            lambda: prefect.alive_provision_runs() == [],
            timeout=30,
            describe=lambda: [(r["state_type"], r["parameters"]) for r in prefect.alive_provision_runs()],
        )
    assert_nothing_left(prefect, runtime, sim, db_sessions, ids, answers)
