"""Gateway fixtures: a real uvicorn on a free loopback port, sessions in the test database, and
stream containers launched with the test runtime (removed by the docker plugin at the end)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from provisioner.gateway.app import create_app
from provisioner.runtime import ContainerRuntime, Role
from provisioner.steps.deps import Deps
from provisioner.store import DeviceState, State
from provisioner.store import devices as devrepo
from provisioner.store import repository as repo
from tests.harness.gateway import Launched, RecordingRuns, launch, make_deps, record_stream_route, serve

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


@pytest.fixture(scope="module")
def launched(runtime: ContainerRuntime) -> Iterator[Launched]:
    """A device and its stream, running, shared by a module's tests (which must not stop them)."""
    from provisioner.store import new_session_id

    session_id = new_session_id()
    yield launch(runtime, session_id)
    runtime.remove_device(session_id)
