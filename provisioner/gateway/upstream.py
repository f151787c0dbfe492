"""Where a session's stream lives, and whether it answers: from the database alone, no Docker.

    StreamUnavailable(reason, detail)   the session has no stream to reach right now
     ├── reason "provisioning"          not live yet (requested .. launching)
     ├── reason <terminal state>        released, failed, orphaned, expired, cancelled, releasing
     └── reason "stream down"           live, but no route is recorded, its host is down, or the
                                        stream at the recorded route does not answer as its own

The upstream address is the route recorded on the session's device (devices.stream_route, written
where the device booted and where its stream was healed: the stream's address on the deployment
network and port 6080, or a host address and published port). Addresses are reused, so a route is
trusted only when the probe finds *this* device's stream there: the stream container serves noVNC
under /vnc/<device id>/ as well, and any other answers 404 (or 401: a device's stream wants its
own secret, devices.stream_secret, as HTTP Basic). httpx exceptions are translated here.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx

from provisioner.runtime.model import stream_auth
from provisioner.store import LIVE, PROVISIONING, SESSION_ID_PATTERN, State
from provisioner.store.devices import StreamRoute
from provisioner.store.host_states import HostState

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
    """A device's stream container and the address the gateway reaches it at."""

    container: str
    host: str
    port: int
    device_id: str
    secret: str | None = None  # what the stream and the device's VNC server want (gateway.rfb)

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"Upstream({self.container!r}, {self.base!r})"

    @property
    def headers(self) -> dict[str, str]:
        """The stream's HTTP Basic header (none for an open stream)."""
        return stream_auth(self.secret)

    @property
    def base(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def valid_session_id(session_id: str) -> bool:
    return bool(SESSION_ID_RE.fullmatch(session_id))


def reason_for_state(state: State) -> str | None:
    """None when the session should have a stream; otherwise why it has none."""
    if state in LIVE:
        return None
    if state in PROVISIONING:
        return PROVISIONING_REASON
    return state.value


def parse_route(route: str) -> tuple[str, int]:
    """("host", port) of a recorded ``host:port`` (``[v6]:port`` too); ValueError when malformed."""
    host, sep, port = route.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a host:port route: {route!r}")
    return host, int(port)


def recorded_upstream(found: StreamRoute | None) -> Upstream:
    """The upstream of a device's recorded route, or StreamUnavailable saying why there is none."""
    if found is None:
        raise StreamUnavailable(STREAM_DOWN, detail="the session holds no device")
    if found.host_state == HostState.DOWN.value:
        raise StreamUnavailable(STREAM_DOWN, detail=f"its host {found.host} is down")
    if not found.route:
        raise StreamUnavailable(STREAM_DOWN, detail=f"device {found.device_id} has no stream route recorded")
    try:
        host, port = parse_route(found.route)
    except ValueError as exc:
        raise StreamUnavailable(
            STREAM_DOWN, detail=f"device {found.device_id} has a malformed route"
        ) from exc
    return Upstream(found.stream_container, host, port, found.device_id, found.secret)


async def probe_stream(client: httpx.AsyncClient, upstream: Upstream) -> None:
    """The device's own stream must serve noVNC's page under /vnc/<device id>/ (HTTP 200) within a
    short timeout: another container at a reused address answers 404, a gone one not at all."""
    url = f"http://{upstream.base}/vnc/{upstream.device_id}/vnc.html"
    try:
        response = await client.get(url, timeout=PROBE_TIMEOUT_S, headers=upstream.headers)
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
