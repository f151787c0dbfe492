"""The gateway for tests and benches: on a real uvicorn in a thread (``serve``) or as its own
process as deployed (``gateway_process``); a recording stand-in for Prefect flow runs; Deps aimed
at the test database and runtime; a device with its stream launched and its route recorded."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import httpx
import uvicorn
from prefect.client.schemas.objects import FlowRun
from sqlalchemy.orm import Session, sessionmaker

from provisioner.runtime import ContainerInfo, ContainerRuntime, Role
from provisioner.settings import load_settings
from provisioner.steps.deps import Deps
from provisioner.store import devices as devrepo
from tests.harness.deployed import ROOT
from tests.harness.services import TEST_PROFILES_FILE

TOKEN = "gw-test-token-3b7d1e"


@dataclass
class RecordingRuns:
    """FlowRuns stand-in for API tests without Prefect: same idempotency semantics as the server."""

    started: list[tuple[str, dict[str, Any], str | None]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    running: set[str] = field(default_factory=set)  # run ids a test says have started
    _by_key: dict[str, FlowRun] = field(default_factory=dict)

    async def cancel_unstarted(self, run_id: str) -> bool:
        if run_id in self.running:
            return False
        self.cancelled.append(run_id)
        return True

    async def start(self, deployment: str, parameters: dict[str, Any], *, idempotency_key: str | None):
        if idempotency_key and idempotency_key in self._by_key:
            return self._by_key[idempotency_key]
        self.started.append((deployment, parameters, idempotency_key))
        run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), parameters=parameters)
        if idempotency_key:
            self._by_key[idempotency_key] = run
        return run


def make_deps(
    sessions: sessionmaker[Session], runtime: ContainerRuntime, *, token: str | None, **overrides: Any
) -> Deps:
    settings = load_settings(
        **overrides,
        instance_id=runtime.instance_id,
        # The same profiles as the runtime (the test ones included), as a deployment configures both.
        docker={"network": runtime.network, "profiles_file": TEST_PROFILES_FILE},
        # Without a token: the open local mode, allowed because the tests' gateways bind loopback.
        gateway={"token": token, "public_url": "http://gateway.test", "insecure_no_auth": token is None},
    )
    return Deps(settings=settings, sessions=sessions, _runtime=runtime)


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app on a real uvicorn in a thread; yields its base URL."""
    # proto IPPROTO_TCP, as uvicorn.run(host=, port=) makes it: asyncio sets TCP_NODELAY only on
    # sockets that say so, and without it every reply waited ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", ws="websockets-sansio", ws_per_message_deflate=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def gateway_process(env: dict[str, str], port: int, *, pids: list[int] | None = None) -> Iterator[str]:
    """`python -m provisioner.gateway` as deployed, with ``env`` (its settings) listening on
    ``port``; yields its base URL once /healthz answers (its process id appended to ``pids``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner.gateway"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if pids is not None:
        pids.append(proc.pid)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def record_stream_route(
    sessions: sessionmaker[Session], runtime: ContainerRuntime, device_id: str
) -> str | None:
    """Record the route of the device's stream container as its boot (or a heal) does; None and
    nothing recorded when the container does not exist."""
    name = runtime.name_for(device_id, Role.STREAM)
    try:
        attrs = runtime.client.api.inspect_container(name)
    except docker.errors.NotFound:
        return None
    ip = ((attrs["NetworkSettings"].get("Networks") or {}).get(runtime.network) or {}).get("IPAddress")
    info = ContainerInfo(name, attrs["Id"], device_id, Role.STREAM, attrs["State"]["Status"], ip=ip or None)
    route = runtime.stream_route(info)
    with sessions.begin() as db:
        devrepo.set_stream(db, device_id, route=route, url=None)
    return route


@dataclass(frozen=True)
class Launched:
    session_id: str
    runtime: ContainerRuntime


def launch(runtime: ContainerRuntime, session_id: str) -> Launched:
    runtime.launch_device(session_id, "stub")
    runtime.launch_stream(session_id)
    runtime.wait_device_ready(session_id, "stub", timeout_s=30)
    runtime.wait_stream_ready(session_id, timeout_s=30)
    return Launched(session_id, runtime)
