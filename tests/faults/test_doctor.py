"""`provisioner doctor` against a deployed stack (a real `prefect server` with `provisioner deploy`
applied, a process worker, PostgreSQL, Docker, the simulator as every provider): exit 0 while all
answers; with the worker stopped, exit 1 naming the worker and how to start one."""

from __future__ import annotations

import subprocess

import pytest

from provisioner.prefect_api.names import EXECUTOR_POOL, WORK_POOL
from tests.harness.deployed import VENV_BIN, Executor, Worker, forget_workers
from tests.plugins.prefect_env import provisioner_environment
from tests.support import wait_for

pytestmark = pytest.mark.docker


def test_doctor_healthy_then_names_the_stopped_worker(stack, database_url, runtime_factory, sim, tmp_path):
    api_url, prefect_env = stack
    forget_workers(api_url, [WORK_POOL, EXECUTOR_POOL])  # workers of earlier tests on this server
    runtime = runtime_factory()
    env = {
        **prefect_env,
        **provisioner_environment(
            instance_id=runtime.instance_id, sim_urls=sim.base_urls, database_url=database_url
        ),
        "PROVISIONER_GATEWAY__TOKEN": "doctor-test-token",
        "COLUMNS": "200",
    }

    def doctor() -> subprocess.CompletedProcess[str]:
        # From a directory without a .env: only this environment counts.
        return subprocess.run(
            [str(VENV_BIN / "provisioner"), "doctor"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = doctor()
    assert first.returncode == 1 and "doctor: worker is broken" in first.stderr, first.stdout + first.stderr
    assert "prefect worker start --pool provisioner-process" in first.stderr

    worker = Worker({**env, "PREFECT_WORKER_HEARTBEAT_SECONDS": "3"}, tmp_path / "worker.log")
    executor = Executor(env, tmp_path / "executor.log")  # the gateway's provisions run there
    try:
        healthy = wait_for(lambda: (done := doctor()).returncode == 0 and done, timeout=90, interval=2)
    finally:
        executor.stop()
        worker.stop()
    lines = healthy.stdout
    pieces = (
        "database",
        "prefect api",
        "deployments",
        "worker",
        "executor",
        "docker",
        "gateway auth",
        "webhooks",
    )
    for piece in pieces:
        assert f"ok   {piece}" in lines, lines
    for provider in ("sms_man", "onlinesim", "sms_activate"):
        assert f"ok   provider {provider}" in lines and "balance" in lines, lines
    assert "doctor-test-token" not in lines + healthy.stderr

    # Stopped: its last heartbeat ages past two beats (3 s each) and the doctor says so.
    stopped = wait_for(lambda: (done := doctor()).returncode != 0 and done, timeout=60, interval=2)
    assert "doctor: worker is broken" in stopped.stderr, stopped.stdout + stopped.stderr
    assert "ok   database" in stopped.stdout and "ok   deployments" in stopped.stdout
