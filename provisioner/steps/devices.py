"""Devices: record one (placed on a host), start it, claim an idle one, retire one.

A device is a device container plus its stream container on one Docker host, recorded in the
devices table *before* its containers start (steps.boot records and starts one, here or on its
host's work queue). A claimed device is never returned to the pool: retiring removes it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import func

from provisioner.runtime import Runtime
from provisioner.runtime.errors import RuntimeFailure
from provisioner.steps.deps import Deps
from provisioner.steps.streams import stream_url_for
from provisioner.store import DEVICE_TERMINAL, DeviceState, State, new_session_id
from provisioner.store import devices as devrepo
from provisioner.store import repository as repo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Device:
    id: str
    profile: str
    device_container: str
    stream_container: str
    stream_url: str | None
    claimed: bool  # False: cold-booted for the session


LaunchSlot = Callable[[str], AbstractContextManager[object]]  # host name -> held while launching


def record_device(
    deps: Deps, profile: str, *, session_id: str | None = None, host: str | None = None
) -> tuple[str, str]:
    """Record a new device as booting, placed on a host in the same transaction (``host``: that
    host or NoCapacity), bound to ``session_id`` for a cold boot; returns (device id, host)."""
    runtime = deps.runtime
    runtime.profile(profile)  # UnknownProfile before anything is recorded
    device_id = new_session_id()
    with deps.sessions.begin() as db:
        placed = runtime.place(db, profile, only=host)
        devrepo.create_device(
            db,
            device_id=device_id,
            profile=profile,
            host=placed,
            device_container=runtime.name_for(device_id, "device"),
            stream_container=runtime.name_for(device_id, "stream"),
            session_id=session_id,
            stream_secret=secrets.token_urlsafe(24),
        )
    return device_id, placed


def start_device(
    deps: Deps,
    device_id: str,
    *,
    runtime: Runtime | None = None,
    slot: LaunchSlot | None = None,
    reason: str = "",
) -> Device:
    """Start a recorded device's device and stream containers (on ``runtime``, else the process's),
    holding ``slot(host)`` meanwhile, wait until both answer (the profile's boot_timeout_s unless
    PROVISIONER_DOCKER__READINESS_TIMEOUT_S is set), and mark it idle, or claimed when a session
    waits for it. On any failure the containers are removed and the device ends failed."""
    runtime = runtime or deps.runtime
    with deps.sessions() as db:
        row = devrepo.get_device(db, device_id)
        session_id = devrepo.device_session_id(db, device_id)
        profile, host, names = row.profile, row.host, (row.device_container, row.stream_container)
        secret = row.stream_secret
    started = time.monotonic()
    timeout = deps.settings.docker.readiness_timeout_s  # None: the profile's boot_timeout_s
    target = DeviceState.CLAIMED if session_id else DeviceState.IDLE
    try:
        with slot(host) if slot is not None else contextlib.nullcontext():
            runtime.ensure_network()  # once, before the two launches race to create it
            with ThreadPoolExecutor(max_workers=2) as pool:
                # The device boots while the stream container starts; websockify connects lazily.
                device_future = pool.submit(runtime.launch_device, device_id, profile, secret=secret)
                stream_future = pool.submit(runtime.launch_stream, device_id, secret=secret)
                device_future.result()
                stream = stream_future.result()
            runtime.wait_device_ready(device_id, profile, timeout)
            ready = runtime.wait_stream_ready(device_id, timeout, secret=secret)
        url = stream.host_port and runtime.stream_url(stream)
        boot_s = time.monotonic() - started
        with deps.sessions.begin() as db:  # refused (IllegalDeviceTransition) if it was retired meanwhile
            devrepo.transition_device(
                db,
                device_id,
                target,
                reason=reason or f"ready after {boot_s:.1f} s",
                stream_url=url or None,
                # The gateway's route, in every mode (over several hosts: the host's stream address).
                stream_route=deps.runtime.stream_route(ready),
                ready_at=func.now(),  # the database's clock, as created_at and claimed_at
                boot_s=boot_s,
            )
    except BaseException as exc:
        reason = f"boot failed: {type(exc).__name__}: {exc}"
        retire_device(deps, device_id, reason=reason, failed=True, runtime=runtime)
        raise
    log.info("device %s (%s) ready after %.1f s on %s, %s", device_id, profile, boot_s, host, target)
    return Device(device_id, profile, names[0], names[1], url or None, claimed=False)


def retire_device(
    deps: Deps,
    device_id: str,
    *,
    reason: str,
    failed: bool = False,
    runtime: Runtime | None = None,
) -> list[str]:
    """Remove a device's containers (on ``runtime``, else the process's) and end its row
    (retired, or failed). Idempotent; returns the problems met (a container that could not be
    removed stays for reconciliation)."""
    problems = []
    try:
        (runtime or deps.runtime).remove_device(device_id)
    except RuntimeFailure as exc:
        problems.append(f"containers: {exc}")
    with deps.sessions.begin() as db:
        row = devrepo.get_device(db, device_id, for_update=True)
        if DeviceState(row.state) not in DEVICE_TERMINAL:
            target = DeviceState.FAILED if failed else DeviceState.RETIRED
            devrepo.transition_device(db, device_id, target, reason=reason)
    return problems


def retire_session_device(deps: Deps, session_id: str, *, reason: str) -> list[str]:
    """Retire the device a session holds (its app data must never reach another person)."""
    with deps.sessions.begin() as db:
        device = devrepo.session_device(db, session_id)
        device_id = device.id if device is not None else None
    if device_id is None:
        return []
    return retire_device(deps, device_id, reason=reason)


def mark_session_ready(deps: Deps, session_id: str, device: Device, *, reason: str, actor: str) -> None:
    """The session's device is usable: awaiting_number, with the device's containers and stream URL."""
    with deps.sessions.begin() as db:
        session = repo.get_session(db, session_id, for_update=True)
        if State(session.state) not in (State.REQUESTED, State.LAUNCHING):
            return
        repo.transition(
            db,
            session_id,
            State.AWAITING_NUMBER,
            reason=reason,
            actor=actor,
            device_container=device.device_container,
            stream_container=device.stream_container,
            stream_url=stream_url_for(deps, session_id, device.stream_url),
            ready_at=func.now(),  # the database's clock, like created_at and the events' times
        )


def claim_device(deps: Deps, session_id: str, *, profile: str, actor: str) -> Device | None:
    """The session's device when it has one already (claimed by the gateway, or a re-run), else an
    idle pool device of ``profile`` claimed atomically; None when none is idle (boot one then)."""
    with deps.sessions.begin() as db:
        repo.get_session(db, session_id, for_update=True)  # the gateway and the flow may both claim
        session = repo.ensure_not_ended(db, session_id)
        held = devrepo.session_device(db, session_id)
        if held is not None and DeviceState(held.state) == DeviceState.CLAIMED:
            device = device_of(held, claimed=True)
        elif held is None and State(session.state) == State.REQUESTED:
            host = deps.hosts.claims_on()
            row = devrepo.claim_idle_device(db, profile=profile, host=host, session_id=session_id)
            device = device_of(row, claimed=True) if row is not None else None
        else:
            device = None
    if device is not None:
        mark_session_ready(deps, session_id, device, reason=f"claimed warm device {device.id}", actor=actor)
    return device


def device_of(row, *, claimed: bool) -> Device:  # noqa: ANN001 - a store.models.DeviceRow
    return Device(row.id, row.profile, row.device_container, row.stream_container, row.stream_url, claimed)


def number_rented(deps: Deps, session_id: str, *, provider: str, actor: str) -> None:
    """The first number is rented: the session now waits for its code."""
    with deps.sessions.begin() as db:
        session = repo.get_session(db, session_id, for_update=True)
        if State(session.state) == State.AWAITING_NUMBER:
            repo.transition(
                db, session_id, State.AWAITING_CODE, reason=f"number rented from {provider}", actor=actor
            )
