"""The gateway without a Docker engine: it proxies every stream from the route recorded in the
database, answers 503 with the reason for a stream that is gone, a route that leads to another
device's stream, or a host that is down, and is ready (/readyz 200) with only the database and the
Prefect API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prefect.settings import get_current_settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from provisioner.gateway.app import create_app
from provisioner.gateway.service import Gateway
from provisioner.gateway.upstream import Upstream, parse_route
from provisioner.prefect_api.orchestrator import PrefectFlowRuns
from provisioner.runtime import Role, RuntimeFailure
from provisioner.settings import load_settings
from provisioner.steps.deps import Deps
from provisioner.store import State, new_session_id
from provisioner.store import devices as devrepo
from provisioner.store import hosts as hostrepo
from provisioner.store.host_states import HostState
from tests.harness.gateway import serve
from tests.plugins.docker_engine import TEST_PROFILES_FILE
from tests.support import wait_for

pytestmark = pytest.mark.docker

NO_ENGINE = "unix:///nonexistent/provisioner-test/docker.sock"


@pytest.fixture
def blind_gateway(monkeypatch, db_sessions, runtime, prefect_api) -> Iterator[tuple[httpx.Client, Gateway]]:
    """A gateway process whose Docker settings and DOCKER_HOST name a socket that does not exist."""
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    settings = load_settings(
        instance_id=runtime.instance_id,
        docker={"host": NO_ENGINE, "network": runtime.network, "profiles_file": TEST_PROFILES_FILE},
        gateway={"public_url": "http://gateway.test", "insecure_no_auth": True},
    )
    deps = Deps(settings=settings, sessions=db_sessions)  # no runtime handed in: it would be built
    with pytest.raises(RuntimeFailure):
        deps.runtime  # noqa: B018 - proves this process reaches no engine
    app = create_app(deps, runs=PrefectFlowRuns(api_url=get_current_settings().api.url))
    with serve(app) as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        yield client, app.state.gateway


def test_proxies_a_live_stream_and_503s_a_gone_or_foreign_one_without_docker(
    blind_gateway, make_session, launched, runtime
) -> None:
    client, gateway = blind_gateway
    deps = gateway.deps
    ws_base = str(client.base_url).replace("http://", "ws://")
    # The Prefect test server may still be warming up: ready within a bounded wait, then exactly so.
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30, interval=0.5)
    assert client.get("/readyz").json()["checks"] == {"database": "ok", "prefect": "ok"}

    sid = launched.session_id
    make_session(State.VERIFIED, session_id=sid)  # records the stream's route as its boot does
    page = client.get(f"/vnc/{sid}/vnc.html")
    assert page.status_code == 200 and "noVNC" in page.text
    with ws_connect(f"{ws_base}/vnc/{sid}/websockify", subprotocols=["binary"], open_timeout=5) as ws:
        assert ws.recv(timeout=5)[:4] == b"RFB "

    gone = new_session_id()
    runtime.launch_stream(gone)  # a stream of its own (no device needed), then removed
    try:
        make_session(State.VERIFIED, session_id=gone)
        # websockify starts within a second or two: its page answers through the gateway first.
        wait_for(lambda: client.get(f"/sessions/{gone}/stream").status_code == 200, timeout=30, interval=0.3)
    finally:
        runtime.remove_device(gone)
    reply = client.get(f"/vnc/{gone}/vnc.html")
    assert reply.status_code == 503 and reply.json()["reason"] == "stream down"
    # Not answering, or (another test process's stream took the address at once) answering 404.
    assert reply.json()["detail"].startswith(f"{runtime.name_for(gone, Role.STREAM)} ")
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"{ws_base}/vnc/{gone}/websockify", subprotocols=["binary"], open_timeout=5)
    assert refused.value.response.status_code == 503

    # A route that leads to another device's stream (an address reused): never proxied there.
    imposter = make_session(State.VERIFIED)
    with deps.sessions.begin() as db:
        route = devrepo.stream_route(db, sid).route
        devrepo.set_stream(db, imposter, route=route, url=None)
    reply = client.get(f"/vnc/{imposter}/vnc.html")
    assert reply.status_code == 503 and reply.json()["detail"].endswith("answered HTTP 404")
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"{ws_base}/vnc/{imposter}/websockify", subprotocols=["binary"], open_timeout=5)
    assert refused.value.response.status_code == 503
    # Even an address cached before it was reused: HTTP asks for this device's copy of noVNC
    # (another stream has none: 404, then a fresh probe says why: 503), and a WebSocket is opened
    # only after a fresh probe.
    gateway.cache.put(imposter, Upstream("cached", *parse_route(route), imposter))
    reply = client.get(f"/vnc/{imposter}/vnc.html")
    assert reply.status_code == 503 and reply.json()["detail"].endswith("answered HTTP 404")
    gateway.cache.put(imposter, Upstream("cached", *parse_route(route), imposter))
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"{ws_base}/vnc/{imposter}/websockify", subprotocols=["binary"], open_timeout=5)
    assert refused.value.response.status_code == 503

    # A session whose device is on a host that is down: 503 naming the host, whatever its route.
    far = make_session(State.VERIFIED)
    with deps.sessions.begin() as db:
        hostrepo.add_host(
            db, name="far", docker_url=NO_ENGINE, stream_address="127.0.0.1", cpus=1, memory_mb=512
        )
        hostrepo.transition_host(db, "far", HostState.DOWN, reason="test: its engine is silent")
        devrepo.get_device(db, far).host = "far"
        devrepo.set_stream(db, far, route=f"{page.url.host}:{page.url.port}", url=None)
    reply = client.get(f"/vnc/{far}/vnc.html")
    assert reply.status_code == 503 and reply.json() == {
        "reason": "stream down",
        "detail": "its host far is down",
        "session_id": far,
    }
    assert deps._runtime is None, "the gateway never made a Docker client"
