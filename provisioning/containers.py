"""Launching a session's device and stream containers, and publishing its stream URL."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from provisioning.deps import Deps
from runtime import ContainerInfo
from store import State
from store import repository as repo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchedSession:
    device: str
    stream: str
    stream_url: str


def vnc_page_path(session_id: str) -> str:
    """The gateway path of a session's noVNC page: connects at once, and reconnects by itself
    (every 2 s) when the stream goes away and comes back (a heal)."""
    return (
        f"/vnc/{session_id}/vnc.html?autoconnect=1&reconnect=1&reconnect_delay=2000"
        f"&path=vnc/{session_id}/websockify"
    )


def gateway_stream_url(deps: Deps, session_id: str) -> str:
    return deps.settings.gateway.public_url.rstrip("/") + vnc_page_path(session_id)


def stream_url_for(deps: Deps, session_id: str, stream: ContainerInfo) -> str:
    """The published port for local runs; the gateway's URL when nothing is published."""
    if stream.host_port:
        return deps.runtime.stream_url(stream)
    return gateway_stream_url(deps, session_id)


def launch_containers(deps: Deps, session_id: str, *, profile: str, actor: str) -> LaunchedSession:
    """Start the device and the stream (device first: the stream relays it), wait until both answer,
    then mark the session awaiting_code. Idempotent: containers are found by name when they exist.
    The container names are recorded before anything is started, so a crash leaves a trace."""
    runtime = deps.runtime
    device_name, stream_name = runtime.name_for(session_id, "device"), runtime.name_for(session_id, "stream")
    with deps.sessions.begin() as db:
        session = repo.ensure_not_ended(db, session_id)
        if session.state == State.NUMBER_ACQUIRED:
            repo.transition(
                db,
                session_id,
                State.LAUNCHING,
                reason=f"launching {profile} device",
                actor=actor,
                device_container=device_name,
                stream_container=stream_name,
            )
    timeout = deps.settings.docker.readiness_timeout_s  # None: the profile's boot_timeout_s
    runtime.ensure_network()  # once, before the two launches race to create it
    # The device boots while the stream container starts; websockify connects lazily.
    with ThreadPoolExecutor(max_workers=2) as pool:
        device_future = pool.submit(runtime.launch_device, session_id, profile)
        stream_future = pool.submit(runtime.launch_stream, session_id)
        device = device_future.result()
        stream = stream_future.result()
        device_ready = pool.submit(runtime.wait_device_ready, session_id, profile, timeout)
        device_ready.result()
    runtime.wait_stream_ready(session_id, timeout)
    url = stream_url_for(deps, session_id, stream)
    with deps.sessions.begin() as db:
        session = repo.get_session(db, session_id, for_update=True)
        if session.state == State.LAUNCHING:
            repo.transition(
                db,
                session_id,
                State.AWAITING_CODE,
                reason="device and stream ready",
                actor=actor,
                stream_url=url,
                ready_at=datetime.now(UTC),
            )
    log.info("session %s: device %s and stream %s ready", session_id, device.name, stream.name)
    return LaunchedSession(device=device.name, stream=stream.name, stream_url=url)
