"""Flows through Prefect: a real `prefect server start`, `prefect deploy --all` of prefect.yaml, a
process worker, and the gateway creating runs. POST /sessions -> the provision run completes ->
the stream is 200; DELETE -> the release run completes -> 503 "released"."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from provisioner.gateway.app import create_app
from provisioner.prefect_api.names import EXECUTOR_POOL
from provisioner.prefect_api.orchestrator import PrefectFlowRuns
from provisioner.settings.version import VERSION
from provisioner.store import SessionRow
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS, PageLog, explained, fetch_through_playwright
from tests.harness.deployed import POOL, ROOT, VENV_BIN, Executor, Worker, prefect_cli
from tests.harness.deployed import prefect_server as start_prefect_server
from tests.harness.gateway import make_deps, serve
from tests.plugins.postgres import create_database, drop_database
from tests.plugins.prefect_env import provisioner_environment

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory, postgres_server) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `prefect server start` with its UI (the run form is tested in a browser below), on
    PostgreSQL as deployed: on SQLite, a write meeting another (the worker's heartbeat, a scheduled
    run's state) fails at once with "database is locked", a 503 the UI does not retry."""
    name = f"prefect_{uuid.uuid4().hex[:8]}"
    database_url = create_database(postgres_server, name)
    try:
        home = tmp_path_factory.mktemp("prefect-home")
        with start_prefect_server(home, ui=True, startup_timeout_s=120, database_url=database_url) as server:
            yield server
    finally:
        drop_database(postgres_server, name)


@pytest.fixture(scope="module")
def deployed(prefect_server) -> tuple[str, dict[str, str]]:
    api_url, env = prefect_server
    for pool in (POOL, EXECUTOR_POOL):
        created = prefect_cli("work-pool", "create", pool, "--type", "process", env=env)
        assert created.returncode == 0, created.stdout + created.stderr
    # The pull step records $PWD as the flows' directory: deploy from the project root.
    deployed = prefect_cli("--no-prompt", "deploy", "--all", env={**env, "PWD": str(ROOT)})
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    return api_url, env


def test_prefect_deploy_registers_the_six_deployments(deployed) -> None:
    api_url, _ = deployed
    reply = httpx.post(f"{api_url}/deployments/filter", json={}, timeout=10, trust_env=False)
    by_name = {d["name"]: d for d in reply.json()}
    assert set(by_name) == {"provision", "executor", "release", "reconcile", "maintain-pool", "launch-device"}
    assert {name: d["work_pool_name"] for name, d in by_name.items() if d["work_pool_name"] != POOL} == {
        "executor": EXECUTOR_POOL
    }
    assert by_name["executor"]["entrypoint"] == by_name["provision"]["entrypoint"]
    assert {d["version"] for d in by_name.values()} == {VERSION}
    assert by_name["provision"]["entrypoint"] == "flows/provision.py:provision_session"
    assert by_name["release"]["entrypoint"] == "flows/release.py:release_session"
    reconcile = by_name["reconcile"]
    assert reconcile["entrypoint"] == "flows/reconcile.py:reconcile_sessions"
    assert [s["schedule"]["interval"] for s in reconcile["schedules"]] == [120.0]
    assert reconcile["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    # A run left Pending by a dead worker holds the one slot 60 s, not the server's 300 s.
    assert reconcile["concurrency_options"]["grace_period_seconds"] == 60
    assert reconcile["global_concurrency_limit"]["limit"] == 1
    pool = by_name["maintain-pool"]
    assert pool["entrypoint"] == "flows/maintain_pool.py:maintain_pool"
    assert [s["schedule"]["interval"] for s in pool["schedules"]] == [30.0]
    assert pool["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert pool["concurrency_options"]["grace_period_seconds"] == 60
    assert pool["global_concurrency_limit"]["limit"] == 1
    launch = by_name["launch-device"]  # runs are created on a host's work queue, never scheduled
    assert (launch["entrypoint"], launch["schedules"]) == ("flows/launch_device.py:launch_device", [])
    pull = by_name["provision"]["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
    assert Path(pull["directory"]) == ROOT


@pytest.fixture
def worker(deployed, database_url, sim, runtime_factory, tmp_path):
    """A process worker whose flow runs use the test database, the simulator and a fresh instance."""
    api_url, env = deployed
    runtime = runtime_factory()
    worker_env = {
        **env,
        **provisioner_environment(
            instance_id=runtime.instance_id, sim_urls=sim.base_urls, database_url=database_url
        ),
        "PROVISIONER_DATABASE__URL": database_url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    log_path = tmp_path / "worker.log"
    worker = Worker(worker_env, log_path)
    executor = Executor(worker_env, log_path)  # the gateway's provisions (PROVISIONER_GATEWAY__RUN_ON)
    try:
        yield runtime, log_path
    finally:
        executor.stop()
        worker.stop()
        for container in runtime.list_managed():
            runtime.remove(container.id)


def _wait_state(
    client: httpx.Client, session_id: str, states: set[str], log_path: Path, timeout: float = 120
):
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        reply = client.get(f"/sessions/{session_id}")
        if reply.status_code == 200:
            body = reply.json()
            if body["state"] in states:
                return body
            if body["state"] in {"failed", "cancelled"} - states:
                break
        time.sleep(0.5)
    pytest.fail(f"session {session_id}: {body}\nworker log:\n{log_path.read_text()[-4000:]}")


def test_post_provisions_through_prefect_then_delete_releases(deployed, worker, db_sessions, sim) -> None:
    api_url, _ = deployed
    runtime, log_path = worker
    sim.set_sms_delay(1.0)
    runs = PrefectFlowRuns(api_url=api_url)
    app = create_app(make_deps(db_sessions, runtime, token=None), runs=runs)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        body = {"providers": ["sms_activate"], "code_timeout_s": 30}
        created = client.post("/sessions", json=body, headers={"Idempotency-Key": "e2e-1"})
        assert created.status_code == 202, created.text
        session_id, run_id = created.json()["session_id"], created.json()["flow_run_id"]
        replay = client.post("/sessions", json=body, headers={"Idempotency-Key": "e2e-1"})
        assert replay.json() == created.json()

        done = _wait_state(client, session_id, {"verified"}, log_path)
        device_id = done["device_id"]
        assert done["flow_run_id"] == run_id and done["code_received"] is True
        run = httpx.get(f"{api_url}/flow_runs/{run_id}", timeout=10, trust_env=False).json()
        assert run["name"] == f"provision-{session_id}"
        assert f"session:{session_id}" in run["tags"]
        assert run["work_pool_name"] == EXECUTOR_POOL  # the default: a thread of the executor
        stream = client.get(f"/sessions/{session_id}/stream")
        assert stream.status_code == 200, stream.text
        assert client.get(f"/vnc/{session_id}/vnc.html").status_code == 200

        released = client.delete(f"/sessions/{session_id}")
        assert released.status_code == 202
        _wait_state(client, session_id, {"released"}, log_path, timeout=90)
        gone = client.get(f"/sessions/{session_id}/stream")
        assert gone.status_code == 503 and gone.json()["reason"] == "released"
    assert [c for c in runtime.list_managed() if c.device_id == device_id] == []


def test_a_run_the_deployment_schema_refuses_is_a_422_naming_the_parameter_and_ends_the_session(
    deployed, db_sessions, runtime, sim
) -> None:
    """The gateway knows the test profiles; the deployment's schema (deployed without them) lists
    only the shipped ones, so Prefect refuses the run (409): 422 for the client, nothing bought."""
    api_url, _ = deployed
    sim.calls.clear()
    app = create_app(make_deps(db_sessions, runtime, token=None), runs=PrefectFlowRuns(api_url=api_url))
    body = {"providers": ["sms_activate"], "device_profile": "stub-volume"}
    with serve(app) as url, httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        for headers in ({"Idempotency-Key": "schema-refused-1"}, {}):
            refused = client.post("/sessions", json=body, headers=headers)
            assert refused.status_code == 422, refused.text
            reply = refused.json()
            assert reply["reason"] == "parameters rejected"
            assert "'request.device_profile'" in reply["detail"]
            assert "stub-volume" not in reply["detail"]  # a 422 never echoes the input
    with db_sessions() as db:
        row = db.scalars(
            select(SessionRow).where(SessionRow.idempotency_key.like("%:schema-refused-1"))
        ).one()
    # Ended with the reason (a client key does not keep it `requested`: a retry would be refused too).
    assert row.state == "failed" and row.flow_run_id is None
    assert "parameters rejected" in (row.last_error or "")
    assert [c for c in sim.calls if c[1] in {"getNumber", "getNumberV2"}] == []


@pytest.mark.browser
def test_ui_run_form_shows_defaults_and_its_run_is_named_after_the_session(
    deployed, worker, db_sessions, sim, tmp_path
) -> None:
    """A person opens the provision deployment's run form in the Prefect UI: real titles and the
    configured defaults; Submit starts a run that the worker names provision-<session>."""
    from playwright.sync_api import sync_playwright

    api_url, _ = deployed
    _, log_path = worker
    sim.set_sms_delay(1.0)
    server = api_url.removesuffix("/api")
    deployments = httpx.post(f"{api_url}/deployments/filter", json={}, timeout=10, trust_env=False).json()
    provision_id = next(d["id"] for d in deployments if d["name"] == "provision")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 2000})
        try:
            fetch_through_playwright(page)
            log = PageLog(page)
            with explained(log, "the run form did not show", tmp_path / "form.png"):
                page.goto(f"{server}/deployments/deployment/{provision_id}/run")
                page.get_by_text("Session lifetime (seconds)").wait_for(timeout=30_000)
            body = page.inner_text("body")
            for title in ("Providers, in fallback order", "Device profile", "Code timeout (seconds)"):
                assert title in body
            assert "Advanced: resume session id" in body
            assert 'Property is type "None"' not in body
            numbers = [el.input_value() for el in page.locator("input[type=number]").all()]
            assert numbers == ["300", "3", "3600", "1800"]  # ... ttl, idle timeout
            for shown in ("telegram", "RU", "stub"):
                assert page.get_by_role("button", name=shown, exact=True).count() == 1, shown
            # The providers, all chosen, in the configured fallback order.
            in_order = re.compile(r"^sms_man\s+onlinesim\s+sms_activate$")
            assert page.get_by_role("button", name=in_order).count() == 1
            # Created, the UI goes to the deployment's page; at this width its Details tab is
            # hidden, so the page selects Runs (?tab=Runs). Refused, it stays on the form.
            with explained(log, "Submit did not lead to the deployment's runs", tmp_path / "submit.png"):
                page.get_by_role("button", name="Submit").click()
                page.wait_for_url(f"**/deployments/deployment/{provision_id}?tab=Runs", timeout=30_000)
        finally:
            page.unroute_all(behavior="ignoreErrors")
            browser.close()

    deadline = time.monotonic() + 120
    run: dict = {}
    while time.monotonic() < deadline:
        runs = httpx.post(
            f"{api_url}/flow_runs/filter",
            json={"flow_runs": {"deployment_id": {"any_": [provision_id]}}},
            timeout=10,
            trust_env=False,
        ).json()
        from_form = [r for r in runs if r["parameters"].get("session_id") == ""]
        if from_form and from_form[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
            run = from_form[0]
            break
        time.sleep(0.5)
    assert run.get("state_type") == "COMPLETED", f"{run}\nworker log:\n{log_path.read_text()[-4000:]}"
    tags = [t for t in run["tags"] if t.startswith("session:")]
    assert len(tags) == 1
    session_id = tags[0].removeprefix("session:")
    assert run["name"] == f"provision-{session_id}"
    from provisioner.store import repository as repo

    with db_sessions() as db:
        assert repo.get_session(db, session_id).state == "verified"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1200})
        try:
            fetch_through_playwright(page)
            log = PageLog(page)
            with explained(log, "the run's page did not show its name", tmp_path / "run.png"):
                page.goto(f"{server}/runs/flow-run/{run['id']}")
                page.get_by_text(f"provision-{session_id}").first.wait_for(timeout=30_000)
        finally:
            page.unroute_all(behavior="ignoreErrors")
            browser.close()


if shutil.which("prefect") is None and not (VENV_BIN / "prefect").exists():  # pragma: no cover
    pytest.skip("the prefect CLI is not installed in this environment", allow_module_level=True)
