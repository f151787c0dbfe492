"""Liveness after ready and the idle timeout, on the real stack (Docker health, the gateway, Prefect)."""

from __future__ import annotations

import struct
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from websockets.sync.client import connect as ws_connect

from flows.provision import ProvisionResult, provision_session
from flows.reconcile import reconcile_sessions
from provisioner.gateway.app import create_app
from provisioner.steps.request import ProvisionRequest
from provisioner.store import LeaseOutcome, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.gateway.test_stream_secret import Frames
from tests.harness.gateway import RecordingRuns, serve
from tests.support import device_of, session, wait_for

pytestmark = pytest.mark.docker


def _env(monkeypatch, **values: str):
    from provisioner.settings import get_settings
    from provisioner.steps.deps import get_deps, reset_deps

    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    reset_deps()
    return get_deps()


def provision(**request) -> ProvisionResult:
    result = provision_session(request=ProvisionRequest(providers=["sms_activate"], **request))
    assert isinstance(result, ProvisionResult) and result.state == State.VERIFIED
    return result


def test_hung_device_is_detected_and_its_session_retired_within_two_passes(
    provisioner_env, sim, runtime, monkeypatch
):
    deps = _env(monkeypatch, PROVISIONER_RECONCILE__UNHEALTHY_GRACE_S="0")
    sim.set_sms_delay(0.2)
    sid = provision(device_profile="stub-hang").session_id  # its VNC server freezes 3 s after READY
    device = device_of(deps, sid)
    wait_for(
        lambda: any(c.device_id == device.id and c.health == "unhealthy" for c in runtime.list_managed()),
        timeout=30,
    )
    running = [c for c in runtime.list_managed() if c.device_id == device.id and c.role == "device"]
    assert running[0].state == "running"  # it looks alive to anything but its health check

    passes = [reconcile_sessions(), reconcile_sessions()]
    assert [[a["action"] for a in p.actions] for p in passes] == [["mark_device_down"], ["orphan_session"]]
    row = session(deps, sid)
    assert row.state == State.ORPHANED and "device unhealthy" in row.last_error
    with deps.sessions() as db:
        assert [x.outcome for x in lease_repo.leases_for_session(db, sid)] == [LeaseOutcome.FINISHED]
    assert device_of(deps, sid).state == "retired"
    assert [c for c in runtime.list_managed() if c.device_id == device.id] == []
    assert sim.ledger().settled


def test_idle_verified_session_is_released_while_an_active_one_is_not(
    provisioner_env, sim, runtime, monkeypatch
):
    deps = _env(monkeypatch, PROVISIONER_GATEWAY__ACTIVITY_WRITE_S="0.5")
    sim.set_sms_delay(0.2)
    idle = provision(idle_timeout_s=4).session_id
    active = provision(idle_timeout_s=4).session_id
    with serve(create_app(deps, runs=RecordingRuns())) as url:
        ws_url = url.replace("http://", "ws://") + f"/vnc/{active}/websockify"
        with ws_connect(ws_url, subprotocols=["binary"], open_timeout=10) as stream:
            # The whole RFB handshake, as a viewer does: the stream then stays open (a viewer that
            # stops at the banner is dropped after the gateway's handshake timeout).
            frames = Frames(stream)
            assert frames.read(12) == b"RFB 003.008\n"  # the device's banner, through the gateway
            stream.send(b"RFB 003.008\n")
            (count,) = frames.read(1)
            assert frames.read(count) == b"\x01"  # security None: the gateway answered the password
            stream.send(b"\x01")
            assert frames.read(4) == b"\x00\x00\x00\x00"  # security result: OK
            stream.send(b"\x01")  # ClientInit, shared
            frames.read(20)  # ServerInit: size and pixel format
            (name_length,) = struct.unpack(">I", frames.read(4))
            frames.read(name_length)

            def quiet_for(sid: str, *, activity: bool = True) -> timedelta:
                with deps.sessions() as db:
                    now = db.scalar(select(func.now()))
                    row = repo.get_session(db, sid)
                    device = device_of(deps, sid)
                    stamps = (row.updated_at, device.last_activity_at if activity else None)
                    return now - max(t for t in stamps if t is not None)

            # Both untouched past the 4 s idle timeout but for the stream's activity stamps: without
            # them the pass would expire the active one too.
            wait_for(
                lambda: min(quiet_for(idle), quiet_for(active, activity=False)) >= timedelta(seconds=4.5),
                timeout=30,
            )
            assert quiet_for(active) < timedelta(seconds=4)  # stamped while its stream is open
            summary = reconcile_sessions()
    assert [(a["action"], a["target"]) for a in summary.actions] == [("expire_session", idle)]
    assert summary.actions[0]["reason"].startswith("idle: no activity for")
    assert session(deps, idle).state == State.EXPIRED
    assert session(deps, active).state == State.VERIFIED
    assert device_of(deps, idle).state == "retired"
    assert sim.ledger().settled
