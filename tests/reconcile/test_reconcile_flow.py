"""The reconcile flow on real PostgreSQL, Docker, Prefect and the provider simulator."""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from datetime import timedelta

import httpx
import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import event, func, select, text

import tasks.reconcile
from flows.provision import ProvisionResult, provision_session
from flows.reconcile import ReconcileSummary, reconcile_sessions
from provisioner.reconciler import observe
from provisioner.runtime.egress import guard_tag, listed_guards, netguard
from provisioner.runtime.isolation import pair_network_name
from provisioner.runtime.model import Role, ownership_labels, stream_auth
from provisioner.steps.request import ProvisionRequest
from provisioner.store import DeviceState, LeaseOutcome, LeaseRow, State, get_engine, new_session_id
from provisioner.store import devices as devrepo
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tasks.reconcile import read_flow_run_states
from tests.plugins.postgres import _plain_dsn
from tests.support import BackgroundProvision, newest_session_in, session, wait_for

pytestmark = pytest.mark.docker

STUB_IMAGE = "provisioner/device-stub:latest"
MIN_CANCEL_S = 120


def db_now(deps):
    with deps.sessions() as db:
        return db.scalar(select(func.now()))


def wait_past_provisioning_deadline(deps, session_id: str) -> None:
    """Until the session's last change is provisioning_deadline_s old on the database's clock."""
    deadline = timedelta(seconds=deps.settings.reconcile.provisioning_deadline_s)

    def passed():
        with deps.sessions() as db:
            return db.scalar(select(func.now())) - repo.get_session(db, session_id).updated_at >= deadline

    wait_for(passed, timeout=deadline.total_seconds() + 10)


def run_pass(dry_run: bool = False) -> ReconcileSummary:
    summary = reconcile_sessions(dry_run=dry_run)
    assert isinstance(summary, ReconcileSummary)
    return summary


def on(summary: ReconcileSummary, target: str) -> list[str]:
    return [row["action"] for row in summary.actions if target in row["target"]]


def lease_outcomes(deps, session_id) -> list[str]:
    with deps.sessions() as db:
        return [x.outcome for x in lease_repo.leases_for_session(db, session_id)]


def device_id_of(session_id: str) -> str:
    from provisioner.steps.deps import get_deps

    device_id = session(get_deps(), session_id).device_id
    assert device_id is not None, f"session {session_id} holds no device"
    return device_id


def containers_of(runtime, device_id):
    """The containers of a device, by the device label."""
    return {c.role: c for c in runtime.list_managed() if c.device_id == device_id}


def provision(**request) -> ProvisionResult:
    result = provision_session(request=ProvisionRequest(providers=["sms_activate"], **request))
    assert isinstance(result, ProvisionResult) and result.state == State.VERIFIED
    return result


def leaked_container(runtime, session_id: str, role: Role = Role.DEVICE) -> str:
    """A created (not started) container of ours for ``session_id``: cheap, and list_managed sees it."""
    container = runtime.client.containers.create(
        STUB_IMAGE,
        command=["sleep", "infinity"],
        name=runtime.name_for(session_id, role),
        labels=ownership_labels(runtime.instance_id, session_id, role),
    )
    return container.id


def bind_device(deps, runtime, session_id: str) -> None:
    """A claimed device row of the same id as the session, held by it (its containers made apart)."""
    from provisioner.store import DeviceState
    from provisioner.store import devices as devrepo

    with deps.sessions.begin() as db:
        devrepo.create_device(
            db,
            device_id=session_id,
            profile="stub",
            host="local",
            device_container=runtime.name_for(session_id, Role.DEVICE),
            stream_container=runtime.name_for(session_id, Role.STREAM),
            session_id=session_id,
        )
        devrepo.transition_device(db, session_id, DeviceState.CLAIMED, reason="test")


def lock_key(deps) -> int:
    return zlib.crc32(f"provisioner-reconcile-{deps.settings.instance_id}".encode())


class TestHealAndOrphan:
    def test_missing_stream_is_healed_then_missing_device_orphans_the_session(
        self, provisioner_env, sim, runtime
    ):
        deps = provisioner_env
        sim.set_sms_delay(0.2)
        sid = provision().session_id
        did = device_id_of(sid)
        assert run_pass().actions == []  # a healthy world: nothing to do

        runtime.remove(runtime.name_for(did, Role.STREAM))
        summary = run_pass()
        assert on(summary, sid) == ["heal_stream"] and summary.failed == 0
        mine = containers_of(runtime, did)
        assert mine["stream"].state == "running" and mine["device"].state == "running"
        row = session(deps, sid)
        assert row.state == State.VERIFIED
        with deps.sessions() as db:
            assert any("stream healed" in e.reason for e in repo.recent_events(db, sid))
        with deps.sessions() as db:
            secret = devrepo.get_device(db, did).stream_secret  # the healed stream serves the same one
        assert secret
        runtime.wait_stream_ready(did, 10, secret=secret)  # noVNC page and the RFB banner over the WebSocket
        assert (
            httpx.get(row.stream_url.split("?")[0], timeout=5, headers=stream_auth(secret)).status_code == 200
        )
        assert run_pass().actions == []  # healed for good

        runtime.remove(runtime.name_for(did, Role.DEVICE))
        first = run_pass()  # one observation is not death: it is remembered
        assert on(first, sid) == ["mark_device_down"] and session(deps, sid).state == State.VERIFIED
        time.sleep(deps.settings.reconcile.device_grace_s)  # then the grace passes (a positive check follows)
        summary = run_pass()
        assert on(summary, sid) == ["orphan_session"] and summary.failed == 0
        assert session(deps, sid).state == State.ORPHANED
        assert containers_of(runtime, did) == {}
        assert lease_outcomes(deps, sid) == [LeaseOutcome.FINISHED]
        assert sim.ledger().settled
        assert run_pass().actions == []

    def test_a_session_whose_device_was_retired_behind_its_back_is_orphaned_after_the_grace(
        self, provisioner_env, sim, runtime
    ):
        """Nobody ends the session: it must not stay live without its containers until its ttl."""
        from provisioner.steps.devices import retire_device

        deps = provisioner_env
        sim.set_sms_delay(0.2)
        sid = provision().session_id
        did = device_id_of(sid)
        assert retire_device(deps, did, reason="retired behind the session's back") == []
        assert containers_of(runtime, did) == {}
        wait_for(lambda: on(run_pass(), sid) == ["orphan_session"], timeout=30)
        row = session(deps, sid)
        assert row.state == State.ORPHANED
        assert "its device ended while the session was live" in (row.last_error or "")
        assert lease_outcomes(deps, sid) == [LeaseOutcome.FINISHED]
        assert sim.ledger().settled

    def test_a_running_stream_without_a_recorded_route_gets_it_without_being_replaced(
        self, provisioner_env, sim, runtime
    ):
        """A device booted before migration 0009 has no stream route: one pass records it."""
        deps = provisioner_env
        sim.set_sms_delay(0.2)
        sid = provision().session_id
        did = device_id_of(sid)
        with deps.sessions.begin() as db:
            route = devrepo.get_device(db, did).stream_route
            devrepo.set_stream(db, did, route=None, url=None)
        stream_id = containers_of(runtime, did)["stream"].id
        summary = run_pass()
        assert on(summary, sid) == ["heal_stream"] and summary.failed == 0
        with deps.sessions() as db:
            assert devrepo.get_device(db, did).stream_route == route
        assert containers_of(runtime, did)["stream"].id == stream_id, "the running stream was kept"
        assert run_pass().actions == []


class TestLeakedContainers:
    def test_unknown_session_container_is_listed_by_a_dry_run_then_removed(self, provisioner_env, runtime):
        deps = provisioner_env
        stray = new_session_id()
        runtime.launch_device(stray, "stub")
        time.sleep(deps.settings.reconcile.grace_s + 1.1)  # created-at has whole seconds

        dry = run_pass(dry_run=True)
        assert dry.dry_run and dry.ran
        assert [(r["action"], r["result"]) for r in dry.actions] == [("remove_container", "dry run")]
        assert dry.actions[0]["target"] == runtime.name_for(stray, Role.DEVICE)
        assert containers_of(runtime, stray)["device"].state == "running"  # nothing was done

        summary = run_pass()
        assert [(r["action"], r["result"]) for r in summary.actions] == [("remove_container", "removed")]
        assert containers_of(runtime, stray) == {}
        assert run_pass().actions == []

        key = f"reconcile-{deps.settings.instance_id}"
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
        assert artifacts and artifacts[0].type == "table"
        assert any("remove_container" in str(a.data) for a in artifacts)
        assert any("nothing to do" in str(a.data) for a in artifacts), "an empty pass leaves its table too"


class TestPairNetworks:
    def test_a_device_removed_behind_our_back_leaves_its_network_one_pass_removes_it(
        self, provisioner_env, runtime
    ):
        deps = provisioner_env
        live = new_session_id()  # an idle device of the pool: a live row, its container running
        with deps.sessions.begin() as db:
            devrepo.create_device(
                db,
                device_id=live,
                profile="stub",
                host="local",
                device_container=runtime.name_for(live, Role.DEVICE),
                stream_container=runtime.name_for(live, Role.STREAM),
            )
            devrepo.transition_device(db, live, DeviceState.IDLE, reason="test")
        runtime.launch_device(live, "stub")
        gone = new_session_id()
        info = runtime.launch_device(gone, "stub")
        runtime.client.api.remove_container(info.id, force=True)  # not through the runtime
        networks = {n.name for n in runtime.inventory().networks}
        assert {pair_network_name(runtime.instance_id, d) for d in (live, gone)} <= networks
        time.sleep(
            deps.settings.reconcile.grace_s + 0.1
        )  # the network outlives the grace (a positive check follows)

        summary = run_pass()
        assert [(r["action"], r["target"], r["result"]) for r in summary.actions] == [
            ("remove_network", pair_network_name(runtime.instance_id, gone), "removed")
        ]
        assert {n.name for n in runtime.inventory().networks} == {
            pair_network_name(runtime.instance_id, live)
        }
        assert containers_of(runtime, live)["device"].state == "running"
        assert run_pass().actions == []

    def test_a_pass_reinstalls_deleted_egress_rules_and_removes_those_of_a_network_gone(
        self, provisioner_env, runtime
    ):
        deps = provisioner_env
        live = new_session_id()
        with deps.sessions.begin() as db:
            devrepo.create_device(
                db,
                device_id=live,
                profile="stub",
                host="local",
                device_container=runtime.name_for(live, Role.DEVICE),
                stream_container=runtime.name_for(live, Role.STREAM),
            )
            devrepo.transition_device(db, live, DeviceState.IDLE, reason="test")
        runtime.launch_device(live, "stub")
        pair = pair_network_name(runtime.instance_id, live)
        rules = sorted(listed_guards(runtime.client, runtime.instance_id)[pair])
        kept = [r.replace("-A ", "-I ", 1) for r in rules if "10.0.0.0/8" not in r]
        netguard(runtime.client, "replace", guard_tag(runtime.instance_id, pair), *kept)  # one deleted
        gone = new_session_id()  # a network removed behind our back, its rules left
        runtime.client.api.create_network(pair_network_name(runtime.instance_id, gone))
        runtime.guard_pair_network(gone)
        runtime.client.api.remove_network(pair_network_name(runtime.instance_id, gone))

        summary = run_pass()
        assert sorted((r["action"], r["target"], r["result"]) for r in summary.actions) == [
            ("guard_network", pair, "egress rules installed"),
            ("remove_guard", pair_network_name(runtime.instance_id, gone), "egress rules removed"),
        ]
        assert set(listed_guards(runtime.client, runtime.instance_id)) == {pair}
        assert set(listed_guards(runtime.client, runtime.instance_id)[pair]) == set(rules)
        assert run_pass().actions == []


class TestRaceWithProvision:
    def test_a_live_provision_is_left_alone_and_completes(self, provisioner_env, sim, runtime):
        """Passes run while the provision launches and waits for its code (longer than stale_after:
        its heartbeat, not its last change, shows it is alive)."""
        deps = provisioner_env
        provision = BackgroundProvision(ProvisionRequest(providers=["sms_activate"], code_timeout_s=60))
        seen: set[str] = set()
        acted: list[dict] = []
        waiting_since = None
        stale_after_s = deps.settings.reconcile.stale_after_s
        waited = 0.0  # from awaiting_code to the end of the last pass
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and waited <= stale_after_s + 2:
                with deps.sessions() as db:
                    rows = repo.list_sessions(db, limit=1)
                if rows:
                    seen.add(rows[0].state)
                    if rows[0].state == State.AWAITING_CODE and waiting_since is None:
                        waiting_since = time.monotonic()
                acted += run_pass().actions
                if waiting_since:
                    waited = time.monotonic() - waiting_since
            assert waiting_since, f"the provision never reached awaiting_code (saw {seen})"
            assert waited > stale_after_s + 2, f"passes ran only {waited:.1f} s past awaiting_code"
            assert acted == []
            sim.deliver(sim.ledger().purchases[0].activation_id, "777111")
        finally:
            state = provision.join()
        assert acted == []
        assert {State.AWAITING_CODE} <= seen
        result = state.result()
        assert (
            isinstance(result, ProvisionResult) and result.state == State.VERIFIED and result.code == "777111"
        )
        assert sorted(containers_of(runtime, device_id_of(result.session_id))) == ["device", "stream"]
        assert sim.ledger().settled

    def test_orphaned_while_waiting_rents_no_second_number(self, provisioner_env, sim, runtime):
        deps = provisioner_env
        provision = BackgroundProvision(
            ProvisionRequest(providers=["sms_activate"], code_timeout_s=30, number_attempts=2)
        )
        row = newest_session_in(deps, State.AWAITING_CODE)
        runtime.remove(runtime.name_for(device_id_of(row.id), Role.DEVICE))
        assert on(run_pass(), row.id) == ["mark_device_down"]
        time.sleep(deps.settings.reconcile.device_grace_s)
        assert on(run_pass(), row.id) == ["orphan_session"]
        # The positive signal: the provision notices the ended session and its run ends by itself
        # (well before its 30 s code timeout), so anything it would have rented is already rented.
        state = provision.join(timeout=20)
        assert state.is_final()
        assert session(deps, row.id).state == State.ORPHANED
        assert len(sim.ledger().purchases) == 1


class TestLock:
    def test_a_second_pass_reports_the_lock_and_does_nothing(self, provisioner_env, runtime):
        deps = provisioner_env
        stray = new_session_id()
        leaked_container(runtime, stray)
        time.sleep(deps.settings.reconcile.grace_s + 1.1)
        with psycopg.connect(_plain_dsn(deps.settings.database.url), autocommit=True) as other:
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(deps),)).fetchone()[0]
            summary = run_pass()
            assert not summary.ran and "lock" in summary.message and summary.actions == []
            assert "device" in containers_of(runtime, stray)
            other.execute("SELECT pg_advisory_unlock(%s)", (lock_key(deps),))
        summary = run_pass()
        assert summary.ran and on(summary, stray) == ["remove_container"]

    def test_two_passes_at_once_one_runs(self, provisioner_env, monkeypatch):
        results: list[ReconcileSummary] = []
        barrier = threading.Barrier(2)
        deps = provisioner_env

        def hold_then_pass():
            barrier.wait()
            results.append(run_pass())

        # Hold the lock while both threads start, so their passes overlap for certain.
        with psycopg.connect(_plain_dsn(deps.settings.database.url), autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (lock_key(deps),))
            threads = [threading.Thread(target=hold_then_pass) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        assert [r.ran for r in results] == [False, False]

        # The first pass is held inside its act step; a second pass starts meanwhile.
        entered, release = threading.Event(), threading.Event()
        real_act = tasks.reconcile.act

        def held_act(*args, **kwargs):
            entered.set()
            release.wait(60)
            return real_act(*args, **kwargs)

        monkeypatch.setattr(tasks.reconcile, "act", held_act)
        first: list[ReconcileSummary] = []
        holder = threading.Thread(target=lambda: first.append(run_pass()))
        holder.start()
        try:
            assert entered.wait(60), "the first pass never reached its act step"
            monkeypatch.setattr(tasks.reconcile, "act", real_act)
            second = run_pass()
        finally:
            release.set()
            holder.join(timeout=60)
        assert [r.ran for r in first] == [True]
        assert not second.ran and second.actions == []
        assert second.message == "another reconcile pass holds the lock; this one does nothing"


class TestEndingSessions:
    def test_ttl_passed_expires_the_session(self, provisioner_env, sim, runtime):
        deps = provisioner_env
        sim.set_sms_delay(0.2)
        sid = provision(ttl_s=4).session_id

        def expired():
            with deps.sessions() as db:
                return db.scalar(select(func.now())) >= repo.get_session(db, sid).expires_at

        wait_for(expired, timeout=10)
        summary = run_pass()
        assert on(summary, sid) == ["expire_session"] and summary.failed == 0
        assert session(deps, sid).state == State.EXPIRED
        assert containers_of(runtime, device_id_of(sid)) == {}
        assert lease_outcomes(deps, sid) == [LeaseOutcome.FINISHED]
        assert sim.ledger().settled

    def test_cancel_refused_as_too_early_is_retried_by_a_later_pass(self, provisioner_env, sim):
        """A provision that died with a number bought: compensation's cancel is refused as too early,
        the lease stays cancel_pending until retry_after, and a later pass refunds it."""
        deps = provisioner_env
        # The provider's minimum (as the real one's, minutes): the simulator refuses the cancel until
        # its clock passes it, however slow the passes below run; its reply says how long to wait.
        sim.configure(min_cancel_s=MIN_CANCEL_S, early_cancel_style="http409")
        with deps.sessions.begin() as db:
            sid = repo.create_session(db, service="telegram", country="RU", actor="test").id  # no flow run
            lease_id = lease_repo.record_lease_pending(
                db, sid, provider="sms_activate", service="tg", country="0", attempt=1
            ).id
        bought = deps.provider("sms_activate").acquire("tg", "0", None)
        with deps.sessions.begin() as db:
            lease_repo.complete_lease(
                db,
                lease_id,
                lease_repo.BoughtNumber(
                    bought.activation_id, bought.phone, bought.price, bought.currency, bought.bought_at
                ),
            )
            repo.transition(db, sid, State.NUMBER_ACQUIRED, reason="test", actor="test")
        wait_past_provisioning_deadline(deps, sid)

        before = db_now(deps)
        summary = run_pass()
        after = db_now(deps)
        assert on(summary, sid) == ["compensate_session"]
        assert session(deps, sid).state == State.FAILED
        with deps.sessions() as db:
            row = db.get_one(LeaseRow, lease_id)
            assert row.outcome == LeaseOutcome.CANCEL_PENDING and row.retry_after is not None
            retry_after = row.retry_after
        # The wait the reply gave, counted from the refused cancel inside the pass.
        wait = timedelta(seconds=MIN_CANCEL_S)
        assert before + wait <= retry_after <= after + wait + timedelta(seconds=1)
        assert not sim.ledger().settled

        assert run_pass().actions == []  # before retry_after: left alone
        assert lease_outcomes(deps, sid) == [LeaseOutcome.CANCEL_PENDING]

        # The provider's minimum passes (its clock), and so does retry_after (the time it is
        # compared with is the database's, so it is the lease's retry time that is moved back).
        sim.advance(MIN_CANCEL_S)
        with deps.sessions.begin() as db:
            db.get_one(LeaseRow, lease_id).retry_after = db.scalar(select(func.now()))
        summary = run_pass()
        assert [(r["action"], r["result"]) for r in summary.actions] == [("close_lease", "cancelled")]
        assert lease_outcomes(deps, sid) == [LeaseOutcome.CANCELLED]
        assert sim.ledger().settled
        assert run_pass().actions == []

    def test_release_stopped_half_way_is_finished(self, provisioner_env, sim, runtime):
        """A release process died after marking the session releasing: its containers and its
        number would stay forever (the session is not terminal); a pass finishes the release."""
        deps = provisioner_env
        with deps.sessions.begin() as db:
            sid = repo.create_session(db, service="telegram", country="RU", actor="test").id
            lease_id = lease_repo.record_lease_pending(
                db, sid, provider="sms_activate", service="tg", country="0", attempt=1
            ).id
        bought = deps.provider("sms_activate").acquire("tg", "0", None)
        with deps.sessions.begin() as db:
            lease_repo.complete_lease(
                db,
                lease_id,
                lease_repo.BoughtNumber(
                    bought.activation_id, bought.phone, bought.price, bought.currency, bought.bought_at
                ),
            )
            for state in (State.NUMBER_ACQUIRED, State.LAUNCHING, State.AWAITING_CODE, State.RELEASING):
                repo.transition(db, sid, state, reason="test", actor="test")
        bind_device(deps, runtime, sid)
        leaked_container(runtime, sid, Role.DEVICE)
        leaked_container(runtime, sid, Role.STREAM)
        wait_past_provisioning_deadline(deps, sid)

        summary = run_pass()
        assert on(summary, sid) == ["finish_release"] and summary.failed == 0
        assert session(deps, sid).state == State.RELEASED
        assert containers_of(runtime, sid) == {}
        assert lease_outcomes(deps, sid) == [LeaseOutcome.CANCELLED]
        assert sim.ledger().settled
        assert run_pass().actions == []


class TestFlowRunStates:
    def test_more_runs_than_one_api_page(self, prefect_api):
        """The API caps a page at 200 runs; more provisions than that must not break observation."""
        from prefect import flow

        @flow(name="one-real-run")
        def one_real_run() -> None:
            return None

        real = str(one_real_run(return_state=True).state_details.flow_run_id)
        ids = [str(uuid.uuid4()) for _ in range(200)] + ["local", real]  # the real one on page 2
        assert read_flow_run_states(ids) == {**dict.fromkeys(ids), real: "COMPLETED"}

    def test_a_run_its_worker_failed_to_start_reads_as_never_started(self, prefect_api):
        """A worker that cannot start a run (a 503 from Prefect as it submits it) sets it Crashed
        from Pending: its run_count stays 0 (its start_time is set all the same), and the plan may run
        it again."""
        from prefect import flow
        from prefect.states import Crashed, Pending

        @flow(name="one-real-run")
        def one_real_run() -> None:
            return None

        ran = str(one_real_run(return_state=True).state_details.flow_run_id)
        with get_client(sync_client=True) as client:
            never = str(client.create_flow_run(one_real_run, state=Pending()).id)
            why = "Failed to submit flow run to infrastructure: 503 Service Unavailable"
            client.set_flow_run_state(never, Crashed(message=why), force=True)
        details: dict = {}
        assert read_flow_run_states([ran, never], details=details) == {ran: "COMPLETED", never: "CRASHED"}
        assert details[ran].started and not details[never].started
        assert details[never].message == why


class TestObservationCost:
    """One pass observes with a constant number of database statements and Docker API calls."""

    def _world(self, deps, runtime, n: int) -> None:
        with deps.sessions.begin() as db:
            db.execute(text("TRUNCATE session_events, number_leases, sessions RESTART IDENTITY CASCADE"))
            for _ in range(n):
                row = repo.create_session(
                    db,
                    service="telegram",
                    country="RU",
                    actor="test",
                    flow_run_id=str(uuid.uuid4()),
                    ttl=timedelta(hours=1),
                )
                lease_repo.record_lease_pending(
                    db, row.id, provider="sms_activate", service="tg", country="0", attempt=1
                )
        for c in runtime.list_managed():
            runtime.remove(c.id)
        with deps.sessions() as db:
            ids = [s.id for s in repo.list_nonterminal_sessions(db)]
        for sid in ids:
            leaked_container(runtime, sid)

    def _count(self, deps, monkeypatch) -> tuple[int, int, int, int]:
        statements: list[str] = []
        docker_calls: list[str] = []
        prefect_calls: list[list[str]] = []
        api = deps.runtime.client.api
        send = api.send

        def counting_send(request, **kwargs):
            docker_calls.append(f"{request.method} {request.path_url}")
            return send(request, **kwargs)

        def counting_states(run_ids):
            prefect_calls.append(list(run_ids))
            return read_flow_run_states(run_ids)

        def on_execute(conn, cursor, statement, *args):
            statements.append(statement)

        monkeypatch.setattr(api, "send", counting_send)
        engine = get_engine()
        event.listen(engine, "before_cursor_execute", on_execute)
        try:
            with deps.sessions() as db:
                observed = observe(db, deps.runtime, counting_states)
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
            monkeypatch.setattr(api, "send", send)
        assert len(prefect_calls) == 1
        return len(statements), len(docker_calls), len(observed.sessions), len(observed.containers)

    def test_same_cost_for_1_and_20_sessions(self, provisioner_env, runtime, monkeypatch):
        deps = provisioner_env
        self._world(deps, deps.runtime, 1)
        self._count(deps, monkeypatch)  # the first pass also reads the engine's nameservers, once
        small = self._count(deps, monkeypatch)
        self._world(deps, deps.runtime, 20)
        large = self._count(deps, monkeypatch)
        assert small[2:] == (1, 1) and large[2:] == (20, 20)
        assert small[:2] == large[:2]
        statements, docker_calls = large[:2]
        # now(), devices, sessions, leases; one label-filtered container list, one network list,
        # one netguard run listing the egress rules (list the netguard containers left behind,
        # create, start, wait, inspect and logs, remove)
        assert statements <= 4
        assert docker_calls == 2 + 7
