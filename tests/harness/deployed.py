"""The deployed path for tests and benches: a real `prefect server` (its own home, SQLite),
`provisioner deploy`, process workers started in their own process group (so one SIGKILL takes
the worker and its flow-run processes), the Prefect REST calls the tests make, and a recorder of
every answer a gateway gave."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import make_url

from tests.harness.services import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
POOL = "provisioner-process"
HEARTBEAT_S = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY: Prefect's minimum
HEARTBEAT_TIMEOUT_S = 40  # the zombie automation's window in these tests
FINAL_RUN_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
ALIVE_RUN_STATES = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"]
SCHEDULED = ["reconcile/reconcile", "maintain-pool/maintain-pool"]  # prefect.yaml's schedules


def base_env(home: Path, api_url: str, *, ui: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PROVISIONER_"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="true" if ui else "false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return env


@contextlib.contextmanager
def prefect_server(
    home: Path,
    *,
    ui: bool = False,
    startup_timeout_s: float = 90,
    server_env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` on a free loopback port with its own home; (api url, env). Its
    database is SQLite in the home, or the PostgreSQL database at ``database_url`` (any driver
    named), as compose and the deploy guide run it. The env is the process's without PREFECT_* and
    PROVISIONER_* variables, aimed at this server."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = base_env(home, api_url, ui=ui)
    # Expired concurrency leases are collected every second (default 15 s): tighter slot bounds.
    server_env = {**env, "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "1", **(server_env or {})}
    if database_url:
        on_asyncpg = make_url(database_url).set(drivername="postgresql+asyncpg")
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = on_asyncpg.render_as_string(hide_password=False)
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api_url}/health", timeout=2, trust_env=False).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server did not start:\n{(home / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield api_url, env
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def prefect_cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The `prefect` command of this venv, run in the project root (prefect.yaml's directory)."""
    return subprocess.run(
        [str(VENV_BIN / "prefect"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def provisioner_deploy(
    env: dict[str, str], *, heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """`provisioner deploy` (work pool, deployments, the heartbeat automation) on env's server."""
    return subprocess.run(
        [str(VENV_BIN / "provisioner"), "deploy", "--heartbeat-timeout", str(heartbeat_timeout_s)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def pause_schedules(api_url: str, deployments: list[str]) -> None:
    """Pause the schedules of the named deployments ("flow/deployment"): the caller drives the runs.
    Their scheduled runs are deleted; runs not final yet are cancelled (their slots freed)."""
    with Prefect(api_url) as api:
        for name in deployments:
            deployment = api.client.get(f"/deployments/name/{name}").raise_for_status().json()
            api.client.post(f"/deployments/{deployment['id']}/pause_deployment").raise_for_status()
            body = {
                "deployments": {"id": {"any_": [deployment["id"]]}},
                "flow_runs": {"state": {"type": {"any_": ALIVE_RUN_STATES}}},
            }
            for run in api.client.post("/flow_runs/filter", json=body).raise_for_status().json():
                cancelled = {"state": {"type": "CANCELLED", "name": "Cancelled"}, "force": True}
                api.client.post(f"/flow_runs/{run['id']}/set_state", json=cancelled).raise_for_status()


def resume_schedules(api_url: str, deployments: list[str]) -> None:
    """Resume the schedules of the named deployments (runs are scheduled within seconds)."""
    with Prefect(api_url) as api:
        for name in deployments:
            deployment = api.client.get(f"/deployments/name/{name}").raise_for_status().json()
            api.client.post(f"/deployments/{deployment['id']}/resume_deployment").raise_for_status()


def forget_workers(api_url: str, pools: list[str]) -> None:
    """Delete every worker registered in the named work pools: a worker stopped by an earlier test
    on the same server counts as polling until its heartbeat ages out."""
    with Prefect(api_url) as api:
        for pool in pools:
            for worker in api.client.post(f"/work_pools/{pool}/workers/filter").raise_for_status().json():
                name = quote(worker["name"], safe="")
                api.client.delete(f"/work_pools/{pool}/workers/{name}").raise_for_status()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: flow-run processes may start sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Worker:
    """`prefect worker start` in a process group of its own; ``kill()`` SIGKILLs the worker and
    every process below it (its flow runs), as a lost machine would."""

    def __init__(self, env: dict[str, str], log_path: Path, queues: tuple[str, ...] = ()) -> None:
        """``queues``: the work queues it serves (--work-queue each); none: every queue of the pool."""
        self.log_path = log_path
        self._log = log_path.open("a")
        only = [arg for queue in queues for arg in ("--work-queue", queue)]
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", *only],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> list[int]:
        """SIGKILL the worker and its flow-run processes; returns the flow-run pids killed."""
        below = descendants(self.proc.pid)
        for pid in [self.proc.pid, *below]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return below

    def stop(self) -> None:
        if self.proc.poll() is None:
            below = descendants(self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
            for pid in below:  # flow runs still going when the test ended
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()


class Executor(Worker):
    """`provisioner executor` in a process group of its own (its flow runs are its threads);
    ``kill()`` SIGKILLs it as a lost machine would."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("a")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "provisioner"), "executor", *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@dataclass
class Prefect:
    """The few REST calls the tests make (the test process has its own Prefect settings).
    ``since``: only provision runs expected to start after it are the caller's (a server shared
    by several tests)."""

    api_url: str
    since: datetime | None = None
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        # Like Prefect's own client: a 503 (SQLite busy under load) is retried after a moment.
        transport = httpx.HTTPTransport(retries=2)
        self.client = httpx.Client(base_url=self.api_url, timeout=15, trust_env=False, transport=transport)
        self.client.event_hooks["response"] = []
        self._send = self.client.send
        self.client.send = self._send_retrying  # type: ignore[method-assign]

    def __enter__(self) -> Prefect:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _send_retrying(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        for attempt in range(6):
            response = self._send(request, **kwargs)
            if response.status_code not in (502, 503) or attempt == 5:
                return response
            response.close()
            time.sleep(1 + attempt)
        return response

    def run(self, run_id: str) -> dict[str, Any]:
        return self.client.get(f"/flow_runs/{run_id}").raise_for_status().json()

    def state(self, run_id: str) -> str:
        return self.run(run_id)["state"]["type"]

    def start_reconcile(self) -> str:
        deployment = self.client.get("/deployments/name/reconcile/reconcile").raise_for_status().json()
        created = self.client.post(f"/deployments/{deployment['id']}/create_flow_run", json={})
        return created.raise_for_status().json()["id"]

    def wait_final(self, run_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state(run_id)
            if state in FINAL_RUN_STATES:
                return state
            time.sleep(0.5)
        raise AssertionError(f"flow run {run_id} not final within {timeout:g} s: {self.state(run_id)}")

    def reconcile_pass(self, timeout: float = 90) -> str:
        """One reconcile pass through the deployment; its final state (Cancelled when another holds
        the deployment's slot: CANCEL_NEW)."""
        return self.wait_final(self.start_reconcile(), timeout)

    def heartbeats(self, run_id: str) -> int:
        body = {
            "filter": {
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{run_id}"]},
                "occurred": {"since": "2000-01-01T00:00:00Z"},
            },
            "limit": 50,
        }
        reply = self.client.post("/events/filter", json=body)
        return reply.json().get("total", -1) if reply.status_code == 200 else -reply.status_code

    def alive_provision_runs(self) -> list[dict[str, Any]]:
        runs: dict[str, Any] = {"state": {"type": {"any_": ALIVE_RUN_STATES}}}
        if self.since is not None:
            runs["expected_start_time"] = {"after_": self.since.isoformat()}
        body = {"flows": {"name": {"any_": ["provision"]}}, "flow_runs": runs, "limit": 200}
        return self.client.post("/flow_runs/filter", json=body).raise_for_status().json()

    def launch_slots_in_use(self, instance_id: str) -> int:
        reply = self.client.get(f"/v2/concurrency_limits/provisioner-launch-{instance_id}")
        return 0 if reply.status_code == 404 else reply.raise_for_status().json()["active_slots"]

    def reconcile_slots_in_use(self) -> int:
        deployment = self.client.get("/deployments/name/reconcile/reconcile").raise_for_status().json()
        return deployment["global_concurrency_limit"]["active_slots"]


class AnswerLog:
    """Polls gateway routes in a thread and counts every status code a client saw, and apart from
    them every request that got no answer (timeout, refused or reset connection, broken body)."""

    def __init__(
        self,
        client: httpx.Client,
        paths: Callable[[], list[str]],
        interval: float = 0.3,
        timeout: float = 10.0,
    ) -> None:
        """``timeout``: how long a client waits for an answer (longer counts as none)."""
        self.client, self.paths, self.interval, self.timeout = client, paths, interval, timeout
        self.codes: Counter[int] = Counter()
        self.by_path: dict[str, Counter[int]] = {}
        self.errors: dict[str, Counter[str]] = {}  # path -> exception type -> count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="answer-log")

    def record(self, path: str, code: int) -> None:
        self.codes[code] += 1
        self.by_path.setdefault(path, Counter())[code] += 1

    def answered(self, path: str) -> int:
        return sum(self.by_path.get(path, Counter()).values())

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.paths():
                try:
                    reply = self.client.get(
                        path, headers={"Accept": "application/json"}, timeout=self.timeout
                    )
                except httpx.HTTPError as exc:
                    self.errors.setdefault(path, Counter())[type(exc).__name__] += 1
                else:
                    self.record(path, reply.status_code)
            self._stop.wait(self.interval)

    def __enter__(self) -> AnswerLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 10)

    @property
    def server_errors(self) -> dict[int, int]:
        return {code: n for code, n in self.codes.items() if code >= 500 and code != 503}
