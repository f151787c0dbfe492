"""A stream opens nothing without the gateway: its published port wants the device's secret
(HTTP Basic) and, behind it, the VNC server wants the device's password; the gateway presents the
one and answers the other, so its owner sees the device."""

from __future__ import annotations

import struct

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from flows.provision import ProvisionResult, provision_session
from provisioner.gateway import rfb
from provisioner.runtime.model import stream_auth, vnc_password
from provisioner.steps.request import ProvisionRequest
from provisioner.store import devices as devrepo
from tests.support import session

pytestmark = pytest.mark.docker


class Frames:
    """Exact reads over a sync WebSocket's binary messages."""

    def __init__(self, ws) -> None:
        self.ws, self.buffer = ws, b""

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self.ws.recv(timeout=10)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data


def security_types(ws) -> bytes:
    frames = Frames(ws)
    assert frames.read(12) == b"RFB 003.008\n"
    ws.send(b"RFB 003.008\n")
    (count,) = frames.read(1)
    return frames.read(count)


def test_the_published_port_shows_nothing_and_the_gateway_shows_the_device(
    provisioner_env, sim, runtime, gateway_factory
):
    deps = provisioner_env
    sim.set_sms_delay(0.3)
    result = provision_session(request=ProvisionRequest(providers=["sms_activate"]))
    assert isinstance(result, ProvisionResult)
    device_id = session(deps, result.session_id).device_id
    with deps.sessions() as db:
        secret = devrepo.get_device(db, device_id).stream_secret
    assert secret and len(secret) >= 24
    (stream,) = [c for c in runtime.list_managed() if c.role == "stream" and c.device_id == device_id]
    port = runtime.client.api.inspect_container(stream.id)["NetworkSettings"]["Ports"]["6080/tcp"][0][
        "HostPort"
    ]
    direct = f"127.0.0.1:{port}"

    # Straight to the published port: no page, no WebSocket.
    assert httpx.get(f"http://{direct}/vnc.html", timeout=5).status_code == 401
    assert httpx.get(f"http://{direct}/", timeout=5).status_code == 401  # no listing either
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"ws://{direct}/websockify", subprotocols=["binary"], open_timeout=5)
    assert refused.value.response.status_code == 401
    # Even past websockify (its secret leaked), the VNC server offers only password
    # authentication, and a wrong password gets no framebuffer.
    with ws_connect(
        f"ws://{direct}/websockify",
        subprotocols=["binary"],
        open_timeout=5,
        additional_headers=stream_auth(secret),
    ) as ws:
        assert security_types(ws) == bytes([rfb.SECURITY_VNC])
        ws.send(bytes([rfb.SECURITY_VNC]))
        frames = Frames(ws)
        ws.send(rfb.vnc_response("wrong!!!", frames.read(16)))
        assert struct.unpack(">I", frames.read(4))[0] != 0

    row = session(deps, result.session_id)
    assert secret not in f"{row.stream_url} {row.stream_container}"  # the browser's links carry none
    env = runtime.client.api.inspect_container(stream.id)["Config"]["Env"]
    assert f"STREAM_SECRET={secret}" in env
    device = runtime.client.api.inspect_container(runtime.name_for(device_id, "device"))
    assert f"VNC_PASSWORD={vnc_password(secret)}" in device["Config"]["Env"]

    # Through the gateway: None for the browser, then the device's framebuffer.
    gw = gateway_factory()
    assert gw.client.get(f"/vnc/{result.session_id}/vnc.html").status_code == 200
    with ws_connect(
        f"{gw.ws_url}/vnc/{result.session_id}/websockify", subprotocols=["binary"], open_timeout=10
    ) as ws:
        assert security_types(ws) == bytes([rfb.SECURITY_NONE])
        ws.send(bytes([rfb.SECURITY_NONE]))
        frames = Frames(ws)
        assert frames.read(4) == b"\0\0\0\0"  # SecurityResult OK
        ws.send(b"\x01")  # ClientInit, shared
        width, height = struct.unpack(">HH", frames.read(4))
        assert (width, height) == (1024, 768)  # the stub's screen
