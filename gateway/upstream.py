"""Where a session's stream lives, and whether it answers: the gateway's one view of Docker.

    StreamUnavailable(reason, detail)   the session has no stream to reach right now
     ├── reason "provisioning"          not live yet (requested .. launching)
     ├── reason <terminal state>        released, failed, orphaned, expired, cancelled, releasing
     └── reason "stream down"           live, but the container is missing, stopped or silent

The upstream address always comes from Docker: the stream container of this deployment instance
and the device this session holds in the database (found by ownership labels, never by a name from
the request), at its address on
the deployment network, port 6080 (or its published port when it has no address there).
Docker and httpx exceptions are translated here and nowhere else in the gateway.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from runtime import ContainerRuntime, RuntimeFailure
from runtime.containers import STREAM_PORT
from runtime.errors import translate_docker_errors
from runtime.model import LABEL_DEVICE, LABEL_ROLE, Role, owner_filter
from store import LIVE, PROVISIONING, SESSION_ID_PATTERN, State

SESSION_ID_RE = re.compile(SESSION_ID_PATTERN)
STREAM_DOWN = "stream down"
PROVISIONING_REASON = "provisioning"
PROBE_TIMEOUT_S = 1.5
CACHE_TTL_S = 2.0


class StreamUnavailable(Exception):
    """The session's stream cannot be reached; ``reason`` is short and stable, ``detail`` says more."""

    def __init__(self, reason: str, *, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Upstream:
    """A running stream container and the address the gateway reaches it at."""

    container: str
    host: str
    port: int

    @property
    def base(self) -> str:
        return f"{self.host}:{self.port}"


def valid_session_id(session_id: str) -> bool:
    return bool(SESSION_ID_RE.fullmatch(session_id))


def reason_for_state(state: State) -> str | None:
    """None when the session should have a stream; otherwise why it has none."""
    if state in LIVE:
        return None
    if state in PROVISIONING:
        return PROVISIONING_REASON
    return state.value


def find_stream(runtime: ContainerRuntime, device_id: str | None) -> Upstream:
    """The running stream container of the session's device (by labels) and its address; blocking."""
    if device_id is None:
        raise StreamUnavailable(STREAM_DOWN, detail="the session holds no device")
    if not valid_session_id(device_id):
        raise StreamUnavailable(STREAM_DOWN, detail="invalid device id")
    filters = {
        "label": [
            *owner_filter(runtime.instance_id),
            f"{LABEL_DEVICE}={device_id}",
            f"{LABEL_ROLE}={Role.STREAM.value}",
        ]
    }
    try:
        with translate_docker_errors():
            rows = runtime.client.api.containers(all=True, filters=filters)
    except RuntimeFailure as exc:
        raise StreamUnavailable(STREAM_DOWN, detail=f"Docker: {exc}") from exc
    if not rows:
        raise StreamUnavailable(STREAM_DOWN, detail="the stream container is missing")
    row = rows[0]
    name = (row.get("Names") or ["/?"])[0].lstrip("/")
    if row.get("State") != "running":
        raise StreamUnavailable(STREAM_DOWN, detail=f"the stream container is {row.get('State')}")
    networks = (row.get("NetworkSettings") or {}).get("Networks") or {}
    ip = (networks.get(runtime.network) or {}).get("IPAddress")
    if ip:
        return Upstream(name, ip, STREAM_PORT)
    for port in row.get("Ports") or []:
        if port.get("PrivatePort") == STREAM_PORT and port.get("PublicPort"):
            return Upstream(name, runtime.publish_host, int(port["PublicPort"]))
    raise StreamUnavailable(STREAM_DOWN, detail=f"{name} has no address on network {runtime.network}")


def route_from_url(device_id: str, stream_url: str | None) -> Upstream:
    """The upstream of a device's recorded stream URL (http://<host stream address>:<port>/...)."""
    parsed = urlsplit(stream_url or "")
    if not parsed.hostname or not parsed.port:
        raise StreamUnavailable(STREAM_DOWN, detail=f"device {device_id} has no stream route recorded yet")
    return Upstream(f"device {device_id}", parsed.hostname, parsed.port)


async def probe_stream(client: httpx.AsyncClient, upstream: Upstream) -> None:
    """noVNC's page must be served (HTTP 200) within a short timeout."""
    url = f"http://{upstream.base}/vnc.html"
    try:
        response = await client.get(url, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise StreamUnavailable(STREAM_DOWN, detail=f"{upstream.container} does not answer") from exc
    if response.status_code != 200:
        raise StreamUnavailable(
            STREAM_DOWN, detail=f"{upstream.container} answered HTTP {response.status_code}"
        )


class UpstreamCache:
    """Resolved upstreams of live sessions. Fresh for a couple of seconds (a noVNC page load fetches
    dozens of files); kept longer as the *last known route*, used only while the database cannot
    say whether the session is still live, so a verified session's stream survives a short outage."""

    def __init__(self, ttl_s: float = CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Upstream]] = {}

    def get(self, session_id: str) -> Upstream | None:
        return self.last_known(session_id, self.ttl_s)

    def last_known(self, session_id: str, max_age_s: float) -> Upstream | None:
        entry = self._entries.get(session_id)
        if entry is None or time.monotonic() - entry[0] > max_age_s:
            return None
        return entry[1]

    def put(self, session_id: str, upstream: Upstream) -> None:
        if len(self._entries) > 1000:
            self._entries.clear()
        self._entries[session_id] = (time.monotonic(), upstream)

    def forget(self, session_id: str) -> None:
        self._entries.pop(session_id, None)
