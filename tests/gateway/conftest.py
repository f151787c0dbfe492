"""Gateway fixtures: a real uvicorn on a free loopback port, sessions in the test database, and
stream containers launched with the test runtime (removed by the docker plugin at the end)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import httpx
import pytest
import uvicorn
from prefect.client.schemas.objects import FlowRun
from sqlalchemy.orm import Session, sessionmaker

from provisioner.gateway.app import create_app
from provisioner.runtime import ContainerInfo, ContainerRuntime, Role
from provisioner.settings import load_settings
from provisioner.steps.deps import Deps
from provisioner.store import DeviceState, State
from provisioner.store import devices as devrepo
from provisioner.store import repository as repo
from tests.plugins.docker_engine import TEST_PROFILES_FILE

TOKEN = "gw-test-token-3b7d1e"
# The path each state is reached by from requested.
_PATHS: dict[State, list[State]] = {
    State.REQUESTED: [],
    State.NUMBER_ACQUIRED: [State.NUMBER_ACQUIRED],
    State.LAUNCHING: [State.NUMBER_ACQUIRED, State.LAUNCHING],
    State.AWAITING_CODE: [State.NUMBER_ACQUIRED, State.LAUNCHING, State.AWAITING_CODE],
    State.VERIFIED: [State.NUMBER_ACQUIRED, State.LAUNCHING, State.AWAITING_CODE, State.VERIFIED],
    State.RELEASED: [
        State.NUMBER_ACQUIRED,
        State.LAUNCHING,
        State.AWAITING_CODE,
        State.RELEASING,
        State.RELEASED,
    ],
    State.FAILED: [State.FAILED],
    State.ORPHANED: [State.NUMBER_ACQUIRED, State.LAUNCHING, State.ORPHANED],
}


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
        gateway={"token": token, "public_url": "http://gateway.test"},
    )
    return Deps(settings=settings, sessions=sessions, _runtime=runtime)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@dataclass
class GatewayUnderTest:
    url: str
    client: httpx.Client
    runs: RecordingRuns
    deps: Deps
    gateway: Any = None  # the app's Gateway (tests swap its Prefect client)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")


@pytest.fixture
def gateway_factory(
    db_sessions: sessionmaker[Session], runtime: ContainerRuntime
) -> Iterator[Callable[..., GatewayUnderTest]]:
    """gateway_factory(token=None, runs=None, **settings) -> a served gateway on the test database
    and runtime (``settings``: overrides of the settings' groups, such as spend={...})."""
    with contextlib.ExitStack() as stack:

        def make(token: str | None = None, runs: Any = None, **settings: Any) -> GatewayUnderTest:
            runs = runs if runs is not None else RecordingRuns()
            deps = make_deps(db_sessions, runtime, token=token, **settings)
            app = create_app(deps, runs=runs)
            url = stack.enter_context(serve(app))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=10, trust_env=False))
            return GatewayUnderTest(url=url, client=client, runs=runs, deps=deps, gateway=app.state.gateway)

        yield make


@pytest.fixture
def gw(gateway_factory: Callable[..., GatewayUnderTest]) -> GatewayUnderTest:
    return gateway_factory()


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


@pytest.fixture
def make_session(db_sessions: sessionmaker[Session], runtime: ContainerRuntime) -> Callable[..., str]:
    """make_session(state, session_id=None, **fields) -> id of a session row walked to that state.

    The session holds a claimed device of the same id, so containers launched with the session id
    (``launch(runtime, sid)``) are its device's; the route of its stream container, when one was
    launched already, is recorded as a boot records it."""

    def make(state: State = State.AWAITING_CODE, session_id: str | None = None, **fields: Any) -> str:
        with db_sessions.begin() as db:
            row = repo.create_session(
                db, service="telegram", country="RU", actor="test", session_id=session_id
            )
            sid = row.id
            devrepo.create_device(
                db,
                device_id=sid,
                profile="stub",
                host="local",
                device_container=runtime.name_for(sid, Role.DEVICE),
                stream_container=runtime.name_for(sid, Role.STREAM),
                session_id=sid,
            )
            devrepo.transition_device(db, sid, DeviceState.CLAIMED, reason="test")
            for step in _PATHS[state]:
                extra = {}
                if step == State.NUMBER_ACQUIRED:
                    extra = {"provider": "sms_man", "phone_number": "+79001234567"}
                repo.transition(db, sid, step, reason=f"test: {step}", actor="test", **extra)
            if fields:
                repo.update_session(db, sid, **fields)
        record_stream_route(db_sessions, runtime, sid)
        return sid

    return make


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


@pytest.fixture(scope="module")
def launched(runtime: ContainerRuntime) -> Iterator[Launched]:
    """A device and its stream, running, shared by a module's tests (which must not stop them)."""
    from provisioner.store import new_session_id

    session_id = new_session_id()
    yield launch(runtime, session_id)
    runtime.remove_device(session_id)
