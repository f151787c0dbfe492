"""`provisioner executor` on the deployed path: the gateway's provisions run as threads of one
long-lived process (deployment provision/executor), are ordinary Prefect flow runs (state, logs),
and a SIGKILLed executor's runs are found and undone or re-run by reconciliation, nothing leaked."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from provisioner.store import State
from provisioner.store import repository as repo
from tests.faults.test_faults import assert_nothing_left, release_all, states
from tests.harness.deployed import AnswerLog, descendants
from tests.support import wait_for

pytestmark = pytest.mark.docker

REQUEST = {"providers": ["sms_activate"], "code_timeout_s": 30}


def run_logs(prefect, run_id: str) -> list[str]:
    body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
    return [
        log["message"] for log in prefect.client.post("/logs/filter", json=body).raise_for_status().json()
    ]


def deployment_name(prefect, run: dict) -> str:
    return prefect.client.get(f"/deployments/{run['deployment_id']}").raise_for_status().json()["name"]


def test_posts_are_verified_through_the_executor_each_run_with_its_own_logs(
    prefect, start_executor, start_worker, gateway_for, db_sessions, database_url, runtime_factory, sim
) -> None:
    """Three POSTs at once: three threads of one executor process, each an ordinary Prefect run
    (COMPLETED), whose logs and artifact are its own session's and no other's."""
    runtime = runtime_factory()
    executor = start_executor(database_url, runtime)
    start_worker(database_url, runtime)  # the release deployment stays on the process pool
    client = gateway_for(db_sessions, runtime, run_on="executor")
    sim.set_sms_delay(1.0)
    posted = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        created = list(pool.map(lambda _: client.post("/sessions", json=REQUEST), range(3)))
    assert [reply.status_code for reply in created] == [202] * 3, [reply.text for reply in created]
    runs = {reply.json()["session_id"]: reply.json()["flow_run_id"] for reply in created}
    sids = list(runs)
    wait_for(lambda: set(states(db_sessions, sids).values()) == {State.VERIFIED}, timeout=90)
    print(f"3 POSTs -> verified through the executor: {time.monotonic() - posted:.2f} s")

    for run_id in runs.values():
        assert deployment_name(prefect, prefect.run(run_id)) == "executor"
        assert prefect.wait_final(run_id, timeout=20) == "COMPLETED"
    assert descendants(executor.proc.pid) == []  # the runs were threads of the executor

    # Each run's logs reach that run in Prefect (the flow's own lines and the engine's).
    for sid, run_id in runs.items():

        def logged(run_id: str = run_id) -> list[str] | None:
            lines = run_logs(prefect, run_id)
            return lines if any("verified" in line for line in lines) else None

        logs = wait_for(logged, timeout=20)
        assert any(line.startswith("provisioner ") for line in logs), logs
        assert any(line.startswith("Beginning flow run") for line in logs), logs
        assert any(sid in line for line in logs), logs
        others = [other for other in sids if other != sid]
        assert not [line for line in logs if any(other in line for other in others)], logs
        body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
        keys = [a["key"] for a in prefect.client.post("/artifacts/filter", json=body).json()]
        assert keys and all(sid.lower() in key for key in keys if key), keys

    release_all(client, db_sessions, sids)
    assert prefect.alive_provision_runs() == []
    assert [c.name for c in runtime.list_managed()] == []
    assert sim.ledger().settled, sim.ledger()


def test_executor_killed_mid_wait_undoes_what_was_bought_and_reruns_the_rest(
    prefect, start_executor, start_worker, gateway_for, db_sessions, database_url, runtime_factory, sim
) -> None:
    """SIGKILL while one session waits for its code (a number bought: undone), one boots its device
    and one is not started yet (nothing bought: both run again by reconciliation, on the executor
    deployment, and verified by the next executor)."""
    runtime = runtime_factory()
    executor = start_executor(database_url, runtime)
    start_worker(database_url, runtime, extra={"PROVISIONER_GATEWAY__RUN_ON": "executor"})
    client = gateway_for(db_sessions, runtime, run_on="executor")
    sim.set_sms_delay(600.0)  # no code before the kill
    sids: list[str] = []
    paths = lambda: [f"/sessions/{sid}" for sid in sids] + ["/readyz"]  # noqa: E731
    with AnswerLog(client, paths) as answers:
        waiting = client.post("/sessions", json=REQUEST).json()
        sids.append(waiting["session_id"])
        wait_for(lambda: states(db_sessions, sids)[sids[0]] == "awaiting_code", timeout=60)
        booting_reply = client.post("/sessions", json={**REQUEST, "device_profile": "stub-boot-10"})
        assert booting_reply.status_code == 202, booting_reply.text
        booting = booting_reply.json()
        sids.append(booting["session_id"])
        wait_for(lambda: states(db_sessions, sids)[sids[1]] == "launching", timeout=60)
        assert prefect.state(booting["flow_run_id"]) == "RUNNING"
        executor.kill()
        unstarted = client.post("/sessions", json=REQUEST).json()  # stays Scheduled: no executor
        sids.append(unstarted["session_id"])

        def run_of(sid: str) -> str | None:
            with db_sessions() as db:
                return repo.get_session(db, sid).flow_run_id

        # Session heartbeats stale after 5 s, the run start deadline 8 s (RECONCILE_ENV).
        def reconciled() -> bool:
            assert prefect.reconcile_pass() == "COMPLETED"
            rerun = [run_of(sids[1]) != booting["flow_run_id"], run_of(sids[2]) != unstarted["flow_run_id"]]
            return states(db_sessions, sids)[sids[0]] == "failed" and all(rerun)

        wait_for(reconciled, timeout=60, interval=1)
        with db_sessions() as db:
            undone = repo.get_session(db, sids[0]).last_error or ""
        assert "heartbeat stopped" in undone, undone
        assert prefect.state(waiting["flow_run_id"]) == "CRASHED"
        assert prefect.state(booting["flow_run_id"]) == "CRASHED"
        assert prefect.state(unstarted["flow_run_id"]) in ("CRASHED", "CANCELLED")
        reruns = [run_of(sid) for sid in sids[1:]]
        assert [deployment_name(prefect, prefect.run(run)) for run in reruns] == ["executor", "executor"]

        sim.set_sms_delay(1.0)
        start_executor(database_url, runtime)
        wait_for(lambda: [states(db_sessions, sids)[sid] for sid in sids[1:]] == ["verified"] * 2, timeout=90)
        assert [prefect.wait_final(run, timeout=20) for run in reruns] == ["COMPLETED"] * 2

        release_all(client, db_sessions, sids)
        wait_for(lambda: prefect.alive_provision_runs() == [], timeout=30)
    assert_nothing_left(prefect, runtime, sim, db_sessions, sids, answers)


def test_delete_mid_wait_ends_the_executor_run_and_frees_its_slot(
    prefect, start_executor, start_worker, gateway_for, db_sessions, database_url, runtime_factory, sim
) -> None:
    """A session released while its run waits for the code: the run's thread ends (a final state
    in Prefect), so the executor's slot is free again; --limit 1 proves it by running the next."""
    runtime = runtime_factory()
    executor = start_executor(database_url, runtime, "--limit", "1")
    start_worker(database_url, runtime)  # the release run
    client = gateway_for(db_sessions, runtime, run_on="executor")
    sim.set_sms_delay(600.0)
    first = client.post("/sessions", json=REQUEST).json()
    wait_for(
        lambda: states(db_sessions, [first["session_id"]])[first["session_id"]] == "awaiting_code", timeout=60
    )
    second = client.post("/sessions", json=REQUEST).json()
    watched_until = time.monotonic() + 2  # a free executor would claim it within its 0.5 s poll
    while time.monotonic() < watched_until:
        assert prefect.state(second["flow_run_id"]) == "SCHEDULED"  # the one slot is taken
        time.sleep(0.25)

    assert client.delete(f"/sessions/{first['session_id']}").status_code == 202
    assert prefect.wait_final(first["flow_run_id"], timeout=60) in ("COMPLETED", "FAILED", "CANCELLED")
    sim.set_sms_delay(1.0)
    wait_for(
        lambda: states(db_sessions, [second["session_id"]])[second["session_id"]] == "verified", timeout=60
    )
    assert executor.proc.poll() is None

    release_all(client, db_sessions, [first["session_id"], second["session_id"]])
    wait_for(lambda: prefect.alive_provision_runs() == [], timeout=30)
    assert [c.name for c in runtime.list_managed()] == []
    assert sim.ledger().settled, sim.ledger()
