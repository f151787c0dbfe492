"""Fault-test fixtures: one Prefect server for every fault module with `provisioner deploy`
applied (each test isolated by its own instance id, database rows and flow runs), a worker factory
whose flow runs use a given database, and a gateway aimed at that server."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from provisioner.cli.local_postgres import throwaway
from provisioner.gateway.app import create_app
from provisioner.prefect_api.orchestrator import PrefectFlowRuns
from provisioner.runtime import ContainerRuntime
from provisioner.settings import load_settings
from provisioner.steps.deps import Deps
from provisioner.store import make_engine
from provisioner.store.migrate import upgrade
from tests.harness.deployed import (
    HEARTBEAT_S,
    SCHEDULED,
    Executor,
    Prefect,
    Worker,
    pause_schedules,
    prefect_server,
    provisioner_deploy,
)
from tests.harness.gateway import serve
from tests.harness.services import TEST_PROFILES_FILE
from tests.plugins.prefect_env import provisioner_environment

# Reconciliation settings of the fault tests' flow runs: short deadlines, the real device grace.
RECONCILE_ENV = {
    "PROVISIONER_RECONCILE__RUN_START_DEADLINE_S": "8",
    # A run the killed worker took but never started: past this by the first pass after the kill.
    "PROVISIONER_RECONCILE__RUN_PENDING_DEADLINE_S": "20",
    "PROVISIONER_RECONCILE__DEVICE_GRACE_S": "60",
    "PROVISIONER_RECONCILE__STALE_AFTER_S": "5",
    "PROVISIONER_RECONCILE__HEARTBEAT_INTERVAL_S": "1",
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """(api url, env) of a Prefect server on which `provisioner deploy` ran (twice: idempotent);
    shared by the fault modules (a server start and two deploys take ~30 s)."""
    home = tmp_path_factory.mktemp("prefect-home")
    with prefect_server(home) as (api_url, env):
        for _ in range(2):
            # The run form's profile choices come from the profiles where deploy runs: the tests'.
            done = provisioner_deploy({**env, "PROVISIONER_DOCKER__PROFILES_FILE": str(TEST_PROFILES_FILE)})
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        # The tests drive every reconcile pass themselves: a scheduled pass running at the same time
        # would hold the deployment's slot and turn the test's pass away (CANCEL_NEW). The recovery
        # module resumes them for its own tests.
        pause_schedules(api_url, SCHEDULED)
        yield api_url, env


@pytest.fixture
def prefect(stack) -> Iterator[Prefect]:
    """The REST calls of one test; its provision runs are those created from now on."""
    api = Prefect(stack[0], since=datetime.now(UTC))
    yield api
    api.client.close()


def flow_run_env(
    env: dict[str, str],
    sim,
    database_url: str,
    runtime: ContainerRuntime,
    reconcile: dict[str, str] | None = RECONCILE_ENV,
    run_on: str = "worker",
) -> dict[str, str]:
    """The environment of a worker or executor whose flow runs use this database, simulator and
    instance. ``reconcile=None``: the default reconciliation settings (no PROVISIONER_RECONCILE__*);
    ``run_on``: where reconciliation runs a provision again (the gateway_for default: the worker)."""
    test_env = provisioner_environment(
        instance_id=runtime.instance_id, sim_urls=sim.base_urls, database_url=database_url
    )
    if reconcile is None:
        test_env = {k: v for k, v in test_env.items() if not k.startswith("PROVISIONER_RECONCILE__")}
    return {
        **env,
        **test_env,
        **(reconcile or {}),
        "PROVISIONER_DATABASE__URL": database_url,
        "PROVISIONER_GATEWAY__RUN_ON": run_on,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        "PREFECT_LOGGING_LEVEL": "INFO",  # the worker log tells what each run did
    }


@pytest.fixture
def start_worker(stack, sim, tmp_path) -> Iterator[Callable[..., Worker]]:
    """start_worker(database_url, runtime) -> a running worker; all are stopped afterwards.
    ``reconcile=None``: the default reconciliation settings; ``extra``: more variables."""
    _, env = stack
    workers: list[Worker] = []

    def start(
        database_url: str,
        runtime: ContainerRuntime,
        reconcile: dict[str, str] | None = RECONCILE_ENV,
        extra: dict[str, str] | None = None,
    ) -> Worker:
        worker_env = {**flow_run_env(env, sim, database_url, runtime, reconcile), **(extra or {})}
        worker = Worker(worker_env, tmp_path / "worker.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def start_executor(stack, sim, tmp_path) -> Iterator[Callable[..., Executor]]:
    """start_executor(database_url, runtime, *args) -> a running `provisioner executor`; all stopped
    afterwards."""
    _, env = stack
    executors: list[Executor] = []

    def start(database_url: str, runtime: ContainerRuntime, *args: str) -> Executor:
        """``args``: options of `provisioner executor` (e.g. --limit 1)."""
        executor_env = flow_run_env(env, sim, database_url, runtime, run_on="executor")
        executor = Executor(executor_env, tmp_path / "executor.log", *args)
        executors.append(executor)
        return executor

    yield start
    for executor in executors:
        executor.stop()


@pytest.fixture
def gateway_for(stack) -> Iterator[Callable[..., httpx.Client]]:
    """gateway_for(sessions, runtime) -> a client of a gateway on that database and the server;
    ``run_on``: where its provisions run (executor or worker)."""
    api_url, _ = stack
    with contextlib.ExitStack() as exits:

        def make(
            sessions: sessionmaker[Session], runtime: ContainerRuntime, run_on: str = "worker"
        ) -> httpx.Client:
            settings = load_settings(
                database={"url": sessions.kw["bind"].url.render_as_string(hide_password=False)},
                instance_id=runtime.instance_id,
                docker={"network": runtime.network, "profiles_file": TEST_PROFILES_FILE},  # the worker's
                gateway={"public_url": "http://gateway.test", "insecure_no_auth": True, "run_on": run_on},
            )
            deps = Deps(settings=settings, sessions=sessions, _runtime=runtime)
            url = exits.enter_context(serve(create_app(deps, runs=PrefectFlowRuns(api_url=api_url))))
            return exits.enter_context(httpx.Client(base_url=url, timeout=30, trust_env=False))

        yield make


@pytest.fixture
def own_postgres():
    """A PostgreSQL cluster of this test alone (it is stopped mid-test), migrated."""
    cluster = throwaway()
    cluster.start()
    url = cluster.create_database("provisioner")
    upgrade(url)
    engine = make_engine(url)
    try:
        yield cluster, url, sessionmaker(engine, expire_on_commit=False)
    finally:
        engine.dispose()
        cluster.stop()
