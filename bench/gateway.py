"""Benchmark: a noVNC stream through the gateway vs. straight to websockify, in one run.

    .venv/bin/python bench/gateway.py [--latency-rounds 300] [--frames 20]

Launches one stub device and its stream container (own instance id and network), a session row
in PostgreSQL (PROVISIONER_DATABASE__URL, or a throwaway cluster), and the gateway as its own
process (`python -m gateway`, as deployed). Both paths speak real RFB over the WebSocket:

* latency: a 1x1 non-incremental FramebufferUpdateRequest and its reply, N round trips;
* throughput: full-screen raw FramebufferUpdates (1024x768x32 bpp = 3 MiB each), M frames.

The direct path goes to the stream container's address on the bench network, port 6080: the
same upstream the gateway dials. Loops are bounded; everything runs on this host. Prints medians
and the gateway/direct ratios; everything it started is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provisioner.runtime import ContainerRuntime, load_profiles  # noqa: E402
from provisioner.store import DeviceState, State, new_session_id  # noqa: E402
from provisioner.store import devices as devrepo  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from tests.harness.gateway import gateway_process  # noqa: E402
from tests.harness.services import free_port, postgres  # noqa: E402

NETWORK = "provisioner-bench"
STREAM_IMAGE = "provisioner/websockify:latest"


class RfbClient:
    """Just enough RFB 3.8 over a WebSocket: handshake, raw encoding, update requests."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.buffer = bytearray()
        self.width = self.height = 0
        self.bytes_read = 0

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            message = self.ws.recv(timeout=10)
            self.buffer += message if isinstance(message, bytes) else message.encode()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        self.bytes_read += n
        return data

    def handshake(self) -> None:
        version = self.read(12)
        assert version.startswith(b"RFB "), version
        self.ws.send(b"RFB 003.008\n")
        count = self.read(1)[0]
        types = self.read(count)
        assert 1 in types, f"no 'None' security type offered: {list(types)}"
        self.ws.send(b"\x01")
        assert struct.unpack(">I", self.read(4))[0] == 0, "security handshake failed"
        self.ws.send(b"\x01")  # ClientInit: shared
        self.width, self.height = struct.unpack(">HH", self.read(4))
        self.read(16)  # pixel format (32 bpp true colour by default)
        self.read(struct.unpack(">I", self.read(4))[0])  # desktop name
        self.ws.send(struct.pack(">BxHi", 2, 1, 0))  # SetEncodings: raw only

    def update(self, width: int, height: int) -> int:
        """Request a non-incremental update of the top-left region; read it whole; bytes read."""
        before = self.bytes_read
        self.ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        while True:
            kind = self.read(1)[0]
            if kind == 0:  # FramebufferUpdate
                self.read(1)
                (rects,) = struct.unpack(">H", self.read(2))
                for _ in range(rects):
                    _x, _y, w, h, encoding = struct.unpack(">HHHHi", self.read(12))
                    if encoding == 0:
                        self.read(w * h * 4)
                    elif encoding == -223:  # DesktopSize pseudo-encoding: no payload
                        pass
                    else:
                        raise RuntimeError(f"unexpected encoding {encoding}")
                return self.bytes_read - before
            if kind == 2:  # Bell
                continue
            if kind == 3:  # ServerCutText
                self.read(3)
                self.read(struct.unpack(">I", self.read(4))[0])
                continue
            raise RuntimeError(f"unexpected server message {kind}")


@dataclass
class PathResult:
    name: str
    latency_ms: list[float]
    frame_s: list[float]
    frame_bytes: int

    @property
    def median_latency_ms(self) -> float:
        return statistics.median(self.latency_ms)

    @property
    def median_mib_s(self) -> float:
        return self.frame_bytes / statistics.median(self.frame_s) / (1 << 20)


def measure(urls: dict[str, str], *, rounds: int, frames: int) -> list[PathResult]:
    """Both paths open at once and sampled alternately, so host noise and the VNC server's own
    update cadence hit them alike."""
    with contextlib.ExitStack() as stack:
        clients = {}
        for name, url in urls.items():
            ws = stack.enter_context(
                ws_connect(url, subprotocols=["binary"], compression=None, max_size=None, open_timeout=10)
            )
            clients[name] = RfbClient(ws)
            clients[name].handshake()
            for _ in range(5):  # warm up both sides
                clients[name].update(1, 1)
        results = {name: PathResult(name, [], [], 0) for name in urls}
        for i in range(rounds):
            order = list(clients) if i % 2 == 0 else list(reversed(clients))
            for name in order:
                started = time.perf_counter()
                clients[name].update(1, 1)
                results[name].latency_ms.append((time.perf_counter() - started) * 1000)
        for i in range(frames):
            order = list(clients) if i % 2 == 0 else list(reversed(clients))
            for name in order:
                rfb = clients[name]
                started = time.perf_counter()
                results[name].frame_bytes = rfb.update(rfb.width, rfb.height)
                results[name].frame_s.append(time.perf_counter() - started)
    return list(results.values())


@contextlib.contextmanager
def database() -> Iterator[str]:
    """PROVISIONER_DATABASE__URL when set, else a throwaway cluster's database."""
    url = os.environ.get("PROVISIONER_DATABASE__URL")
    if url:
        yield url
        return
    with postgres(f"bench_{secrets.token_hex(4)}", migrate=False) as url:
        yield url


def remove_network(client: docker.DockerClient) -> None:
    with contextlib.suppress(docker.errors.APIError):
        client.api.remove_network(NETWORK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-rounds", type=int, default=300)
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    rounds, frames = min(args.latency_rounds, 10_000), min(args.frames, 500)

    from sqlalchemy.orm import sessionmaker

    from provisioner.store import make_engine
    from provisioner.store.migrate import upgrade

    instance_id = "bench-" + secrets.token_hex(3)
    client = docker.from_env()
    runtime = ContainerRuntime(
        client,
        instance_id=instance_id,
        network=NETWORK,
        publish_streams=False,
        stream_image=STREAM_IMAGE,
        profiles=load_profiles(None),
    )
    session_id = new_session_id()
    with database() as url, contextlib.ExitStack() as cleanup:
        cleanup.callback(remove_network, client)  # last: after the containers are gone
        upgrade(url)
        engine = make_engine(url)
        cleanup.callback(engine.dispose)
        with sessionmaker(engine).begin() as db:
            repo.create_session(db, service="telegram", country="RU", actor="bench", session_id=session_id)
            for state in (State.NUMBER_ACQUIRED, State.LAUNCHING, State.AWAITING_CODE):
                repo.transition(db, session_id, state, reason="bench", actor="bench")
            # The session holds a device of the same id (containers are named by the device).
            devrepo.create_device(
                db,
                device_id=session_id,
                profile="stub",
                host="local",
                device_container=runtime.name_for(session_id, "device"),
                stream_container=runtime.name_for(session_id, "stream"),
                session_id=session_id,
            )
            devrepo.transition_device(db, session_id, DeviceState.CLAIMED, reason="bench")
        cleanup.callback(runtime.remove_device, session_id)
        runtime.launch_device(session_id, "stub")
        runtime.launch_stream(session_id)
        runtime.wait_device_ready(session_id, "stub", timeout_s=60)
        stream = runtime.wait_stream_ready(session_id, timeout_s=60)
        with sessionmaker(engine).begin() as db:  # the gateway's route, as the device's boot records it
            devrepo.set_stream(db, session_id, route=runtime.stream_route(stream), url=None)

        port = free_port()
        env = {
            **os.environ,
            "PROVISIONER_DATABASE__URL": url,
            "PROVISIONER_INSTANCE_ID": instance_id,
            "PROVISIONER_DOCKER__NETWORK": NETWORK,
            "PROVISIONER_GATEWAY__PORT": str(port),
            # The gateway needs no Docker engine: routes are in the database.
            "PROVISIONER_DOCKER__HOST": "unix:///nonexistent/docker.sock",
            "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        }
        env.pop("PROVISIONER_GATEWAY__TOKEN", None)
        env["PROVISIONER_GATEWAY__INSECURE_NO_AUTH"] = "true"  # no auth to measure; it binds loopback
        base = cleanup.enter_context(gateway_process(env, port))
        direct_url = f"ws://{stream.ip}:6080/websockify"
        gateway_url = base.replace("http://", "ws://") + f"/vnc/{session_id}/websockify"

        direct, through = measure(
            {"direct": direct_url, "gateway": gateway_url}, rounds=rounds, frames=frames
        )
    print(f"stream {stream.name}: {direct.frame_bytes / (1 << 20):.2f} MiB per full frame")
    print(f"{'path':8} {'rtt median ms':>14} {'rtt p90 ms':>11} {'MiB/s median':>13}")
    for r in (direct, through):
        p90 = statistics.quantiles(r.latency_ms, n=10)[-1]
        print(f"{r.name:8} {r.median_latency_ms:14.3f} {p90:11.3f} {r.median_mib_s:13.1f}")
    print(f"added latency (median): {through.median_latency_ms - direct.median_latency_ms:.3f} ms")
    print(f"throughput ratio gateway/direct: {through.median_mib_s / direct.median_mib_s:.2f}")


if __name__ == "__main__":
    main()
