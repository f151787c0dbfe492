"""The deployed path over several Docker hosts: a real `prefect server`, `provisioner deploy`, and
one process worker per extra engine serving the default queue and its host's queue host-<name>
with that engine as its local one. Provision and maintain-pool runs place each device by capacity
and launch it as a launch-device run on its host's queue; a launch nobody picks up is cancelled
and its device retired."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed, Running

from provisioner.runtime.errors import WrongEngine
from provisioner.runtime.model import Role, ownership_labels
from provisioner.runtime.table import HostsRuntime
from provisioner.settings import load_settings
from provisioner.steps.deps import Deps
from provisioner.steps.devices import record_device
from provisioner.steps.launch import LaunchFailed, launch_on_queue, start_on_this_host
from provisioner.store import devices as devrepo
from provisioner.store import hosts as hostrepo
from provisioner.store.models import SessionRow
from tests.harness.deployed import (
    ROOT,
    VENV_BIN,
    Prefect,
    Worker,
    pause_schedules,
    prefect_server,
    provisioner_deploy,
)
from tests.plugins.docker_engine import TEST_NETWORK, TEST_PROFILES_FILE, new_test_instance_id
from tests.plugins.prefect_env import provisioner_environment

pytestmark = [pytest.mark.docker, pytest.mark.multihost]

RUN_S = 240  # a run's whole life on two loaded cores (process start, launch run start, boot)


@dataclass
class HostStack:
    api: Prefect
    env: dict[str, str]  # the workers' environment, without an engine
    instance_id: str
    workers: list[Worker]
    home: Path  # the server's home; worker logs

    def logs(self) -> str:
        return "\n".join(w.log_path.read_text()[-3000:] for w in self.workers)

    def start(self, deployment: str, parameters: dict[str, Any]) -> str:
        found = self.api.client.get(f"/deployments/name/{deployment}").raise_for_status().json()
        created = self.api.client.post(
            f"/deployments/{found['id']}/create_flow_run", json={"parameters": parameters}
        )
        return created.raise_for_status().json()["id"]

    def completed(self, run_id: str) -> None:
        state = self.api.wait_final(run_id, RUN_S)
        assert state == "COMPLETED", f"{state}: {self.api.run(run_id)['state']['message']}\n{self.logs()}"

    def launches(self) -> dict[str, tuple[str, str]]:
        """device id -> (work queue, final state) of every launch-device run."""
        body = {"flows": {"name": {"any_": ["launch-device"]}}, "limit": 200}
        runs = self.api.client.post("/flow_runs/filter", json=body).raise_for_status().json()
        return {r["parameters"]["device_id"]: (r["work_queue_name"], r["state"]["type"]) for r in runs}


@pytest.fixture(scope="module")
def host_stack(tmp_path_factory, simulator, extra_engines, database_url) -> Iterator[HostStack]:
    home = tmp_path_factory.mktemp("prefect-hosts")
    instance_id = new_test_instance_id()
    with prefect_server(home) as (api_url, env):
        done = provisioner_deploy(env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        pause_schedules(api_url, ["reconcile/reconcile", "maintain-pool/maintain-pool"])
        run_env = {
            **env,
            **provisioner_environment(
                instance_id=instance_id, sim_urls=simulator.base_urls, database_url=database_url
            ),
            "PROVISIONER_DATABASE__URL": database_url,
            "PROVISIONER_POOL__WARM": '{"stub": 1}',
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
        workers = [
            Worker(
                {**run_env, "DOCKER_HOST": engine.socket_url, "PROVISIONER_DOCKER__HOST": engine.socket_url},
                home / f"worker-{engine.name}.log",
                queues=("default", f"host-{engine.name}"),
            )
            for engine in extra_engines
        ]
        api = Prefect(api_url)
        try:
            yield HostStack(api, run_env, instance_id, workers, home)
        finally:
            for worker in workers:
                worker.stop()
            api.client.close()
            for engine in extra_engines:
                for row in engine.client.api.containers(
                    all=True, filters={"label": f"provisioner.instance={instance_id}"}
                ):
                    engine.client.api.remove_container(row["Id"], force=True, v=True)


def add_host(stack: HostStack, engine, cpus: str) -> str:
    """`provisioner hosts add`, as an operator runs it: records the host, creates its work queue."""
    done = subprocess.run(
        [str(VENV_BIN / "provisioner"), "hosts", "add", engine.name, "--docker-url", engine.url]
        + ["--stream-address", engine.stream_address, "--cpus", cpus, "--memory", "4g"]
        + ["--tls-ca", engine.tls.ca, "--tls-cert", engine.tls.cert, "--tls-key", engine.tls.key],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def containers_by_device(engine, instance_id: str) -> Counter[str]:
    """Containers of the instance on the engine by device, created or exited ones included."""
    rows = engine.client.api.containers(all=True, filters={"label": f"provisioner.instance={instance_id}"})
    return Counter(row["Labels"]["provisioner.device"] for row in rows)


def test_launches_run_on_their_hosts_queues_and_the_pool_refills_each_host(
    host_stack, db_sessions, sim, extra_engines, docker_client
):
    stack = host_stack
    big, small = extra_engines
    sim.set_sms_delay(0.2)
    for engine, cpus in ((big, "1.5"), (small, "1")):  # stubs take 0.5 cpus: room for 3 and 2
        assert f"work queue host-{engine.name}: created" in add_host(stack, engine, cpus)
    queues = stack.api.client.post("/work_pools/provisioner-process/queues/filter", json={}).json()
    assert {f"host-{big.name}", f"host-{small.name}"} <= {q["name"] for q in queues}

    request = {"providers": ["sms_activate"], "code_timeout_s": 20}
    runs = [stack.start("provision/provision", {"request": request}) for _ in range(3)]
    for run in runs:
        stack.completed(run)
    with db_sessions() as db:
        sessions = db.query(SessionRow).filter(SessionRow.flow_run_id.in_(runs)).all()
        assert sorted(s.state for s in sessions) == ["verified"] * 3
        devices = [devrepo.get_device(db, s.device_id) for s in sessions]
    assert Counter(d.host for d in devices) == {big.name: 2, small.name: 1}  # by free capacity
    launches = stack.launches()
    assert {d.id: launches[d.id] for d in devices} == {d.id: (f"host-{d.host}", "COMPLETED") for d in devices}
    for engine in (big, small):  # each device and its stream on its host's engine
        assert containers_by_device(engine, stack.instance_id) == {
            d.id: 2 for d in devices if d.host == engine.name
        }
    label = {"label": f"provisioner.instance={stack.instance_id}"}
    assert docker_client.api.containers(all=True, filters=label) == []  # nothing on the main engine

    stack.completed(stack.start("maintain-pool/maintain-pool", {}))
    with db_sessions() as db:
        idle = [row for row, holder in devrepo.list_live_devices(db) if row.state == "idle"]
    assert sorted(d.host for d in idle) == sorted([big.name, small.name])  # warm 1 per host
    launches = stack.launches()
    assert {d.id: launches[d.id] for d in idle} == {d.id: (f"host-{d.host}", "COMPLETED") for d in idle}
    for engine in (big, small):
        assert containers_by_device(engine, stack.instance_id) == {
            d.id: 2 for d in [*devices, *idle] if d.host == engine.name
        }


def test_a_launch_no_worker_picks_up_is_cancelled_and_its_device_retired(
    host_stack, db_sessions, extra_engines
):
    stack = host_stack
    engine = extra_engines[0]
    settings = load_settings(
        instance_id=stack.instance_id,
        docker={"network": TEST_NETWORK, "profiles_file": TEST_PROFILES_FILE, "readiness_timeout_s": 1},
        hosts={"launch_start_s": 2},
    )
    deps = Deps(settings, db_sessions, HostsRuntime.from_settings(settings, db_sessions))
    with db_sessions.begin() as db:  # a host whose queue no worker serves
        hostrepo.add_host(
            db,
            name="nobody",
            **engine.host_fields(),
            stream_address=engine.stream_address,
            cpus=1,
            memory_mb=1024,
        )
    device_id, host = record_device(deps, "stub")
    assert host == "nobody"
    with temporary_settings({PREFECT_API_URL: stack.api.api_url}), pytest.raises(LaunchFailed) as failed:
        launch_on_queue(deps, device_id, host=host, profile="stub", reason="test")
    assert "no worker picked up the launch" in str(failed.value)
    assert "work queue host-nobody within 4 s" in str(failed.value)
    assert stack.launches()[device_id] == ("host-nobody", "CANCELLED")
    with db_sessions() as db:
        row = devrepo.get_device(db, device_id)
        assert (row.state, "host-nobody" in row.reason) == ("failed", True)

    # A worker now serves the queue: it runs the next launch there, never the cancelled one.
    log_path = stack.home / "worker-nobody.log"
    engine_env = {"DOCKER_HOST": engine.socket_url, "PROVISIONER_DOCKER__HOST": engine.socket_url}
    stack.workers.append(Worker({**stack.env, **engine_env}, log_path, queues=("host-nobody",)))
    patient = load_settings(
        instance_id=stack.instance_id,
        docker={"network": TEST_NETWORK, "profiles_file": TEST_PROFILES_FILE},
        hosts={"launch_start_s": RUN_S},
    )
    deps = Deps(patient, db_sessions, HostsRuntime.from_settings(patient, db_sessions))
    second, _ = record_device(deps, "stub", host="nobody")
    with temporary_settings({PREFECT_API_URL: stack.api.api_url}):
        launch_on_queue(deps, second, host="nobody", profile="stub", reason="test")
    assert stack.launches()[second] == ("host-nobody", "COMPLETED"), log_path.read_text()[-3000:]
    assert stack.launches()[device_id] == ("host-nobody", "CANCELLED")
    placed = containers_by_device(engine, stack.instance_id)
    assert (placed[second], placed[device_id]) == (2, 0)


def test_a_launch_whose_run_crashes_is_reported_at_once_not_at_the_deadline(
    host_stack, db_sessions, extra_engines
):
    """A worker that took the launch and died: Prefect's heartbeat automation (`provisioner deploy`)
    sets the run Crashed. The caller stops waiting there, long before its deadline (here 120 s)."""
    stack = host_stack
    engine = extra_engines[0]
    settings = load_settings(
        instance_id=stack.instance_id,
        docker={"network": TEST_NETWORK, "profiles_file": TEST_PROFILES_FILE, "readiness_timeout_s": 1},
        hosts={"launch_start_s": 120},
    )
    deps = Deps(settings, db_sessions, HostsRuntime.from_settings(settings, db_sessions))
    with db_sessions.begin() as db:  # no worker serves host-gone: the test plays the dead worker
        hostrepo.add_host(
            db,
            name="gone",
            **engine.host_fields(),
            stream_address=engine.stream_address,
            cpus=1,
            memory_mb=1024,
        )
    device_id, _ = record_device(deps, "stub", host="gone")
    name = deps.runtime.name_for(device_id, "device")  # what the dead worker had started
    engine.client.containers.create(
        "provisioner/device-stub:latest",
        name=name,
        labels=ownership_labels(stack.instance_id, device_id, Role.DEVICE),
    )

    def launch() -> None:
        with temporary_settings({PREFECT_API_URL: stack.api.api_url}):
            launch_on_queue(deps, device_id, host="gone", profile="stub", reason="test")

    with ThreadPoolExecutor(1) as pool, temporary_settings({PREFECT_API_URL: stack.api.api_url}):
        waiting = pool.submit(launch)
        run_id = wait_for_launch_run(stack, device_id)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Running(), force=True)  # a worker took it, then died
            assert not waiting.done()  # the caller still waits on it
            crashed_at = time.monotonic()
            message = "no heartbeat for 90 s: the flow run's process is gone"
            client.set_flow_run_state(run_id, Crashed(message=message), force=True)
        with pytest.raises(LaunchFailed) as failed:
            waiting.result(timeout=60)
        reported_s = time.monotonic() - crashed_at
    assert reported_s < 10, f"reported {reported_s:.1f} s after the crash"
    assert str(failed.value) == (
        f"the launch of device {device_id} on work queue host-gone ended Crashed: {message}"
    )
    assert stack.launches()[device_id] == ("host-gone", "CRASHED")
    with db_sessions() as db:
        row = devrepo.get_device(db, device_id)
        assert (row.state, "host-gone ended Crashed" in row.reason) == ("failed", True)
    label = {"label": f"provisioner.device={device_id}"}
    assert engine.client.api.containers(all=True, filters=label) == []


def wait_for_launch_run(stack: HostStack, device_id: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = {"flow_runs": {"name": {"any_": [f"launch-{device_id}"]}}}
        runs = stack.api.client.post("/flow_runs/filter", json=body).raise_for_status().json()
        if runs:
            return runs[0]["id"]
        time.sleep(0.2)
    raise AssertionError(f"no launch run for device {device_id} within 30 s")


def test_a_worker_whose_engine_is_not_the_hosts_refuses_the_launch(db_sessions, extra_engines):
    first, second = extra_engines
    settings = load_settings(
        instance_id=new_test_instance_id(),
        docker={"network": TEST_NETWORK, "profiles_file": TEST_PROFILES_FILE, "host": second.socket_url},
    )
    deps = Deps(settings, db_sessions, HostsRuntime.from_settings(settings, db_sessions))
    with db_sessions.begin() as db:
        hostrepo.add_host(
            db,
            name=first.name,
            **first.host_fields(),
            stream_address=first.stream_address,
            cpus=1,
            memory_mb=1024,
        )
    device_id, _ = record_device(deps, "stub")
    with pytest.raises(WrongEngine, match=f"not host {first.name}'s"):
        start_on_this_host(deps, device_id, slot=None, reason="test")
    with db_sessions() as db:
        assert devrepo.get_device(db, device_id).state == "failed"
    assert containers_by_device(second, settings.instance_id) == Counter()
    assert containers_by_device(first, settings.instance_id) == Counter()
