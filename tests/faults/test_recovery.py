"""Recovery time on the deployed path: `provisioner deploy` with the default schedules (reconcile
every 120 s, maintain-pool every 30 s) and the default reconciliation settings, no manual pass
after the first fault.

First a verified device is paused 30 s while the test drives reconcile passes: each keeps the
session verified and records the device down as paused (less than the device grace: not retired),
and a pass after the pause clears that record. Then three faults in a row: the worker SIGKILLed
with its flow-run processes during a burst of 4 POSTs (then restarted), the session store's
PostgreSQL stopped 20 s during a burst of 3 (the verified stream keeps answering, a POST is a 503
with Retry-After), a verified device paused 30 s. Within 180 s of the end of the last fault every
accepted session is `verified` (none `failed`: nothing had been bought when its run died, so it
is run again), no provision run is alive, and the reconcile and maintain-pool deployments have run
again; the gateway answered every request (none hung past 10 s or dropped, none a 500/502),
nothing leaked, no number is left open, the paused device was kept.

The fault modules' Prefect server runs its schedules during this module (the other fault modules
drive every pass themselves)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from provisioner.prefect_api.setup import DEPLOYMENT_TAG
from provisioner.store import LIVE, TERMINAL, State
from provisioner.store import devices as devrepo
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.harness.deployed import (
    HEARTBEAT_TIMEOUT_S,
    SCHEDULED,
    AnswerLog,
    Prefect,
    pause_schedules,
    resume_schedules,
)
from tests.support import wait_for

pytestmark = pytest.mark.docker

RECOVERY_S = 180  # from the end of the last fault
RECONCILE_INTERVAL_S, POOL_INTERVAL_S = 120, 30  # prefect.yaml's schedules
PASS_S = 60  # a scheduled pass from its start to Completed, under load
PROFILE = "stub-boot-10"  # a burst is still launching (nothing bought) when each fault hits
REQUEST = {"providers": ["sms_activate"], "code_timeout_s": 60, "device_profile": PROFILE}
BOUGHT = {State.NUMBER_ACQUIRED, State.AWAITING_CODE, State.VERIFIED}
STARTED = {State.LAUNCHING, State.AWAITING_NUMBER}
MIN_ANSWERS = 10  # per polled path


@pytest.fixture(scope="module", autouse=True)
def schedules(stack) -> Iterator[None]:
    """prefect.yaml's schedules active for this module's tests, paused again afterwards."""
    api_url, _ = stack
    resume_schedules(api_url, SCHEDULED)
    yield
    pause_schedules(api_url, SCHEDULED)


def states(sessions, ids) -> dict[str, State]:
    with sessions() as db:
        return {sid: State(repo.get_session(db, sid).state) for sid in ids}


def post_burst(client: httpx.Client, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        reply = client.post("/sessions", json=REQUEST)
        assert reply.status_code == 202, reply.text
        ids.append(reply.json()["session_id"])
    return ids


def runs_since(prefect: Prefect, deployment: str, since: datetime) -> list[dict]:
    """Completed runs of ``deployment`` (flow/deployment name) that started after ``since``."""
    flow, name = deployment.split("/")
    body = {
        "flows": {"name": {"any_": [flow]}},
        "deployments": {"name": {"any_": [name]}},
        "flow_runs": {
            "start_time": {"after_": since.isoformat()},
            "state": {"type": {"any_": ["COMPLETED"]}},
        },
        "limit": 50,
    }
    return prefect.client.post("/flow_runs/filter", json=body).raise_for_status().json()


def scheduled_runs(prefect: Prefect, name: str) -> list[tuple[str, str, str, str]]:
    """(expected start, start, state name, message) of every run of a scheduled deployment."""
    body = {"deployments": {"name": {"any_": [name]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 100}
    runs = prefect.client.post("/flow_runs/filter", json=body).raise_for_status().json()
    return [
        (
            r["expected_start_time"][11:19],
            (r["start_time"] or "")[11:19],
            r["state"]["name"],
            r["state"]["message"],
        )
        for r in runs
        if r["state"]["type"] != "SCHEDULED"
    ]


def log(start: float, what: str) -> None:
    print(f"[{time.monotonic() - start:6.1f} s] {what}", flush=True)


def a_pass(prefect: Prefect) -> None:
    """One reconcile pass of the test's own that completed (a scheduled pass holding the slot turns
    it away: CANCEL_NEW; then it is asked again)."""
    wait_for(lambda: prefect.reconcile_pass() == "COMPLETED", timeout=180, interval=1)


def paused_30s_with_passes(prefect: Prefect, sessions, sid: str, device, runtime, sim) -> None:
    """Pause the session's verified device 30 s (less than the device grace) and drive passes:
    each keeps the session verified and its device recorded down as paused, not retired; after
    the pause a pass clears the record and the device's containers run on."""
    device.pause()
    paused_at = time.monotonic()
    passes = 0
    while time.monotonic() - paused_at < 30:
        a_pass(prefect)
        passes += 1
        with sessions() as db:
            row = repo.get_session(db, sid)
            held = devrepo.session_device(db, sid)
            assert row.state == State.VERIFIED and held is not None
            assert (held.down_condition, held.down_since is not None) == ("paused", True)
        time.sleep(5)
    device.unpause()
    assert passes >= 2

    def cleared() -> bool:
        # Docker's probes failed while it was paused: it is unhealthy until the next one passes
        # (the stub probes every 5 s), and stays down (paused first: the device grace).
        a_pass(prefect)
        with sessions() as db:
            held = devrepo.session_device(db, sid)
            return held is not None and (held.down_since, held.down_condition) == (None, None)

    wait_for(cleared, timeout=25, interval=2)
    with sessions() as db:
        row = repo.get_session(db, sid)
    assert State(row.state) in LIVE
    assert sorted(c.state for c in runtime.list_managed() if c.device_id == row.device_id) == [
        "running",
        "running",
    ]
    assert sim.ledger().refunds == [] and len(sim.ledger().open) == 0  # finished, not cancelled


@pytest.mark.timeout(840)
def test_three_faults_in_a_row_recover_within_180_s(
    prefect, start_worker, gateway_for, own_postgres, runtime_factory, sim, docker_client
):
    cluster, url, sessions = own_postgres
    runtime = runtime_factory()
    t0 = time.monotonic()
    print(f"test clock 0 at {datetime.now(UTC):%H:%M:%S}")
    worker = start_worker(url, runtime, reconcile=None)
    client = gateway_for(sessions, runtime)
    sim.set_sms_delay(2.0)
    live = post_burst(client, 1)[0]
    wait_for(lambda: states(sessions, [live])[live] == State.VERIFIED, timeout=120, interval=1)
    with sessions() as db:
        held = repo.get_session(db, live)
        device = docker_client.containers.get(held.device_container)
        live_device = held.device_id

    accepted: list[str] = []
    paths = [f"/vnc/{live}/vnc.html", "/readyz", "/sessions"]
    with AnswerLog(client, lambda: [*paths, *(f"/sessions/{sid}" for sid in [live, *accepted])]) as answers:
        # 0. The verified device paused 30 s under the test's own passes: kept, then seen up again.
        paused_30s_with_passes(prefect, sessions, live, device, runtime, sim)
        log(t0, "device paused 30 s under passes: kept; now the faults in a row")

        # 1. The worker and its flow runs SIGKILLed while a burst of 4 launches; restarted at once.
        first = post_burst(client, 4)
        accepted += first
        wait_for(lambda: sum(s in STARTED for s in states(sessions, first).values()) >= 2, timeout=90)
        at_kill = states(sessions, first)
        killed = worker.kill()
        log(t0, f"worker killed with {len(killed)} processes; sessions {at_kill}")
        assert killed, "the worker had flow-run processes"
        assert not BOUGHT & set(at_kill.values()), f"a number was bought before the kill: {at_kill}"
        worker = start_worker(url, runtime, reconcile=None)

        # 2. The store's PostgreSQL stopped 20 s while a burst of 3 launches.
        second = post_burst(client, 3)
        accepted += second
        wait_for(lambda: any(s in STARTED for s in states(sessions, second).values()), timeout=90)
        at_stop = states(sessions, second)
        cluster.stop()
        log(t0, f"store stopped; sessions {at_stop}")
        assert not BOUGHT & set(at_stop.values()), f"a number was bought before the stop: {at_stop}"
        stopped_at = time.monotonic()
        stream_codes = []
        while time.monotonic() - stopped_at < 20:  # the fault's length; the answer log asks too
            stream_codes.append(client.get(f"/vnc/{live}/vnc.html").status_code)
            refused = client.post("/sessions", json={})
            answers.record("POST /sessions", refused.status_code)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
            time.sleep(1)
        cluster.start()
        assert set(stream_codes) == {200}, stream_codes  # the verified stream kept working

        # 3. A verified device paused 30 s (less than the device grace: it is kept).
        log(t0, "store started again; device paused")
        device.pause()
        time.sleep(30)
        device.unpause()
        ended = time.monotonic()
        ended_at = datetime.now(UTC)
        log(t0, "device unpaused: the last fault ended")
        seen: dict[str, State] = {}

        def recovered() -> bool:
            current = states(sessions, [live, *accepted])
            ended_badly = {sid: s for sid, s in current.items() if s in TERMINAL}
            if ended_badly:  # none may end: fail at once, with the reasons
                with sessions() as db:
                    why = {sid: repo.get_session(db, sid).last_error for sid in ended_badly}
                raise AssertionError(f"sessions ended instead of verified: {ended_badly} {why}")
            alive = [r["state"]["type"] for r in prefect.alive_provision_runs()]
            if current != seen:
                seen.update(current)
                log(t0, f"sessions {sorted(current.values())}; alive provision runs {sorted(alive)}")
            return set(current.values()) == {State.VERIFIED} and alive == []

        try:
            wait_for(recovered, timeout=RECOVERY_S, interval=2)
        except AssertionError:
            lines = worker.log_path.read_text().splitlines()
            actions = [x for x in lines if "Task run 'act-" in x or "action(s)" in x or "nothing to do" in x]
            print("\n".join(actions[-40:]))
            for deployment in ("reconcile", "maintain-pool"):
                print(deployment, scheduled_runs(prefect, deployment))
            raise
        recovery_s = time.monotonic() - ended
        print(f"recovered {recovery_s:.0f} s after the last fault (killed {len(killed)} flow-run processes)")

        # Slots: both scheduled deployments ran again (their dead runs gave their slots back). The
        # sessions may recover before the next reconcile is due: wait for it within its bound
        # (below) and the time a pass takes.
        def both_ran() -> tuple[list[dict], list[dict]] | None:
            pool = runs_since(prefect, "maintain-pool/maintain-pool", ended_at)
            reconcile = runs_since(prefect, "reconcile/reconcile", ended_at)
            return (pool, reconcile) if pool and reconcile else None

        pool_runs, reconcile_runs = wait_for(
            both_ran,
            timeout=max(1.0, RECONCILE_INTERVAL_S + 30 + PASS_S - (time.monotonic() - ended)),
            interval=2,
            describe=lambda: (
                f"completed since the last fault: maintain-pool "
                f"{len(runs_since(prefect, 'maintain-pool/maintain-pool', ended_at))}, reconcile "
                f"{len(runs_since(prefect, 'reconcile/reconcile', ended_at))}; "
                f"reconcile runs: {scheduled_runs(prefect, 'reconcile')}"
            ),
        )
        first_start = {
            name: min(datetime.fromisoformat(r["start_time"]) for r in runs) - ended_at
            for name, runs in (("maintain-pool", pool_runs), ("reconcile", reconcile_runs))
        }
        # One interval, and the time a worker takes to start a run under load.
        assert first_start["maintain-pool"] <= timedelta(seconds=POOL_INTERVAL_S + 30), first_start
        assert first_start["reconcile"] <= timedelta(seconds=RECONCILE_INTERVAL_S + 30), first_start

        with sessions() as db:  # the paused device kept: the same one, still the session's
            assert repo.get_session(db, live).device_id == live_device
        # Its stream, unhealthy while the device was paused, is healed by a pass: it answers again.
        stream = f"/vnc/{live}/vnc.html"
        try:
            wait_for(
                lambda: client.get(stream).status_code == 200, timeout=RECONCILE_INTERVAL_S + 30, interval=2
            )
        except AssertionError:
            raise AssertionError(f"{stream}: {client.get(stream).text[:300]}") from None

        for sid in [live, *accepted]:
            assert client.delete(f"/sessions/{sid}").status_code in (200, 202)
        wait_for(
            lambda: set(states(sessions, [live, *accepted]).values()) <= TERMINAL, timeout=120, interval=1
        )
    assert answers.server_errors == {}, answers.by_path
    assert answers.errors == {}, answers.errors  # every request was answered, none hung or dropped
    fewest = min(answers.answered(path) for path in answers.paths())
    print(f"answers: {fewest} at least per path; {dict(answers.codes)}")
    assert fewest >= MIN_ANSWERS, answers.by_path
    assert answers.by_path["/readyz"][503] > 0  # readiness said so while the store was down
    with sessions() as db:
        assert [x.id for x in lease_repo.list_open_leases(db)] == []
    assert sim.ledger().settled, sim.ledger()
    wait_for(
        lambda: prefect.alive_provision_runs() == [],
        timeout=30,
        describe=lambda: [(r["state_type"], r["parameters"]) for r in prefect.alive_provision_runs()],
    )
    assert prefect.launch_slots_in_use(runtime.instance_id) == 0

    def nothing_left() -> bool:
        # Leftovers of the killed launches (devices retired by the runs that took over) are removed
        # by a pass once past the container grace: drive passes (the schedule's may hold the slot).
        if runtime.list_managed() == []:
            return True
        prefect.reconcile_pass()
        return False

    with contextlib.suppress(AssertionError):
        wait_for(nothing_left, timeout=180, interval=5)
    assert [c.name for c in runtime.list_managed()] == []


def _forced_running(prefect: Prefect, *, tagged: bool) -> str:
    """A flow run set Running with no process behind it; ``tagged``: a run of our maintain-pool
    deployment (it carries the deployments' tag), else a run of a flow of no deployment."""
    if tagged:
        deployment = prefect.client.get("/deployments/name/maintain-pool/maintain-pool").raise_for_status()
        created = prefect.client.post(f"/deployments/{deployment.json()['id']}/create_flow_run", json={})
    else:
        flow = prefect.client.post(
            "/flows/", json={"name": f"probe-{uuid.uuid4().hex[:8]}"}
        ).raise_for_status()
        created = prefect.client.post("/flow_runs/", json={"flow_id": flow.json()["id"]})
    run = created.raise_for_status().json()
    assert (DEPLOYMENT_TAG in run["tags"]) is tagged
    body = {"state": {"type": "RUNNING", "name": "Running"}, "force": True}
    prefect.client.post(f"/flow_runs/{run['id']}/set_state", json=body).raise_for_status()
    return run["id"]


def _beat(prefect: Prefect, run_id: str) -> None:
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": "prefect.flow-run.heartbeat",
        "resource": {"prefect.resource.id": f"prefect.flow-run.{run_id}"},
        "related": [{"prefect.resource.id": f"prefect.tag.{DEPLOYMENT_TAG}", "prefect.resource.role": "tag"}],
    }
    prefect.client.post("/events", json=[event]).raise_for_status()


def test_a_run_of_ours_that_never_beats_is_crashed_and_one_that_beats_is_not(prefect):
    """The automation for runs that die before their first heartbeat: Running and silent for the
    timeout -> Crashed; a run that beats, or one that is not ours, is left Running."""
    silent = _forced_running(prefect, tagged=True)
    beating = _forced_running(prefect, tagged=True)
    foreign = _forced_running(prefect, tagged=False)
    started = time.monotonic()

    def crashed() -> bool:
        _beat(prefect, beating)
        return prefect.state(silent) == "CRASHED"

    wait_for(crashed, timeout=HEARTBEAT_TIMEOUT_S + 45, interval=5)
    print(f"silent run crashed {time.monotonic() - started:.0f} s after it entered Running")
    for _ in range(3):  # the beating run's window is evaluated like the silent one's: give it time
        _beat(prefect, beating)
        time.sleep(5)
    assert "no heartbeat within" in prefect.run(silent)["state"]["message"]
    assert (prefect.state(beating), prefect.state(foreign)) == ("RUNNING", "RUNNING")
    for run_id in (beating, foreign):
        body = {"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True}
        prefect.client.post(f"/flow_runs/{run_id}/set_state", json=body).raise_for_status()
