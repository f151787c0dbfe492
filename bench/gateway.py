"""Benchmark: noVNC streams through the gateway vs. straight to websockify, in one run.

    .venv/bin/python bench/gateway.py [--streams 20] [--latency-rounds 300] [--frames 20] [--workers 2]

Launches --streams stub devices and their stream containers (own instance id and network), a
session row per device in PostgreSQL (PROVISIONER_DATABASE__URL, or a throwaway cluster), and the
gateway as its own process (`python -m provisioner.gateway`, as deployed), one for each count of
--workers (PROVISIONER_GATEWAY__WORKERS; e.g. `--workers 1,2` compares one process with two in the
same run). Every stream has all paths open at once, and all speak real RFB over the WebSocket:

* latency: a 1x1 non-incremental FramebufferUpdateRequest and its reply, N round trips;
* throughput: full-screen raw FramebufferUpdates (1024x768x32 bpp = 3 MiB each), M frames.

Each round samples one path on every stream at once (one thread per stream, a barrier between
phases), then the next; the order rotates by round, so host noise and the VNC servers' cadence
hit every path alike. Aggregate throughput is the bytes of all streams over a phase's
wall time. The direct path goes to the stream container's address on the bench network, port
6080 (the same upstream the gateway dials), presenting the device's stream secret and answering
its VNC password challenge as the gateway does. Loops are bounded; everything runs on this host;
everything it started is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import struct
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provisioner.gateway.rfb import vnc_response  # noqa: E402
from provisioner.runtime import ContainerRuntime, load_profiles  # noqa: E402
from provisioner.runtime.model import stream_auth, vnc_password  # noqa: E402
from provisioner.store import DeviceState, State, new_session_id  # noqa: E402
from provisioner.store import devices as devrepo  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from tests.harness.gateway import gateway_process  # noqa: E402
from tests.harness.services import free_port, postgres  # noqa: E402

NETWORK = "provisioner-bench"
STREAM_IMAGE = "provisioner/websockify:latest"


class RfbClient:
    """Just enough RFB 3.8 over a WebSocket: handshake, raw encoding, update requests."""

    def __init__(self, ws: ClientConnection, password: str | None = None) -> None:
        self.ws = ws
        self.password = password  # the device's VNC password: the direct path answers it itself
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
        if self.password is not None and 2 in types:  # VNC authentication, as the gateway does it
            self.ws.send(b"\x02")
            self.ws.send(vnc_response(self.password, self.read(16)))
        else:
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
    latency_ms: list[float] = field(default_factory=list)  # every stream's round trips
    bytes_moved: int = 0  # full frames, every stream
    wall_s: float = 0.0  # the throughput phases' wall time, summed

    def latency(self, q: float) -> float:
        ordered = sorted(self.latency_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def mib_s(self) -> float:
        return self.bytes_moved / self.wall_s / (1 << 20)


@dataclass(frozen=True)
class Stream:
    urls: dict[str, str]  # path name -> WebSocket URL ("direct" first)
    secret: str  # devices.stream_secret: the direct path presents it as the gateway does


def measure(streams: list[Stream], *, rounds: int, frames: int) -> dict[str, PathResult]:
    """Every stream's paths open at once; each round samples one path on every stream at once,
    then the next (order rotating by round)."""
    paths = list(streams[0].urls)
    results = {name: PathResult(name) for name in paths}

    def order(i: int) -> list[str]:
        return paths[i % len(paths) :] + paths[: i % len(paths)]

    barrier = threading.Barrier(len(streams))
    lock = threading.Lock()
    phases: dict[tuple[int, str], list[tuple[float, float]]] = {}

    def one_stream(stream: Stream) -> None:
        with contextlib.ExitStack() as stack:
            clients = {}
            for name in paths:
                direct = name == "direct"
                ws = stack.enter_context(
                    ws_connect(
                        stream.urls[name],
                        subprotocols=["binary"],
                        compression=None,
                        max_size=None,
                        open_timeout=30,
                        additional_headers=stream_auth(stream.secret) if direct else None,
                    )
                )
                clients[name] = RfbClient(ws, vnc_password(stream.secret) if direct else None)
                clients[name].handshake()
                for _ in range(5):  # warm up both sides
                    clients[name].update(1, 1)
            for i in range(rounds):
                for name in order(i):
                    barrier.wait(timeout=120)
                    started = time.perf_counter()
                    clients[name].update(1, 1)
                    took = (time.perf_counter() - started) * 1000
                    with lock:
                        results[name].latency_ms.append(took)
            for i in range(frames):
                for name in order(i):
                    rfb = clients[name]
                    barrier.wait(timeout=120)
                    started = time.perf_counter()
                    moved = rfb.update(rfb.width, rfb.height)
                    with lock:
                        results[name].bytes_moved += moved
                        phases.setdefault((i, name), []).append((started, time.perf_counter()))

    with ThreadPoolExecutor(len(streams)) as pool:
        for done in [pool.submit(one_stream, stream) for stream in streams]:
            done.result()  # a stream that failed fails the run (its barrier breaks the others)
    for (_, name), spans in phases.items():
        results[name].wall_s += max(end for _, end in spans) - min(start for start, _ in spans)
    return results


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


def prepare(db, runtime: ContainerRuntime, session_id: str, secret: str) -> None:
    """A session awaiting its code, holding a claimed stub device of the same id (containers are
    named by the device)."""
    repo.create_session(db, service="telegram", country="RU", actor="bench", session_id=session_id)
    for state in (State.NUMBER_ACQUIRED, State.LAUNCHING, State.AWAITING_CODE):
        repo.transition(db, session_id, state, reason="bench", actor="bench")
    devrepo.create_device(
        db,
        device_id=session_id,
        profile="stub",
        host="local",
        device_container=runtime.name_for(session_id, "device"),
        stream_container=runtime.name_for(session_id, "stream"),
        session_id=session_id,
        stream_secret=secret,
    )
    devrepo.transition_device(db, session_id, DeviceState.CLAIMED, reason="bench")


def boot(runtime: ContainerRuntime, session_id: str, secret: str):
    runtime.launch_device(session_id, "stub", secret=secret)
    runtime.launch_stream(session_id, secret=secret)
    runtime.wait_device_ready(session_id, "stub", timeout_s=180)
    return runtime.wait_stream_ready(session_id, timeout_s=180, secret=secret)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--latency-rounds", type=int, default=300)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument(
        "--workers",
        default="2",
        help="gateway processes (PROVISIONER_GATEWAY__WORKERS), one gateway per comma-separated count",
    )
    args = parser.parse_args()
    worker_counts = [max(1, min(int(w), 8)) for w in args.workers.split(",")]
    count = max(1, min(args.streams, 50))
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
    session_ids = [new_session_id() for _ in range(count)]
    stream_secrets = {sid: secrets.token_urlsafe(24) for sid in session_ids}  # as a boot records one
    with database() as url, contextlib.ExitStack() as cleanup:
        cleanup.callback(remove_network, client)  # last: after the containers are gone
        upgrade(url, instance_id=instance_id)  # the gateway runs as the database's deployment
        engine = make_engine(url)
        cleanup.callback(engine.dispose)
        with sessionmaker(engine).begin() as db:
            for session_id in session_ids:
                prepare(db, runtime, session_id, stream_secrets[session_id])
        for session_id in session_ids:
            cleanup.callback(runtime.remove_device, session_id)
        runtime.ensure_network()
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            ready = list(pool.map(lambda sid: boot(runtime, sid, stream_secrets[sid]), session_ids))
        print(f"{count} device(s) and streams ready in {time.monotonic() - started:.1f} s")
        with sessionmaker(engine).begin() as db:  # the gateway's routes, as a device's boot records them
            for session_id, stream in zip(session_ids, ready, strict=True):
                devrepo.set_stream(db, session_id, route=runtime.stream_route(stream), url=None)

        gateways = {}  # path name -> base URL
        for workers in worker_counts:
            port = free_port()
            env = {
                **os.environ,
                "PROVISIONER_DATABASE__URL": url,
                "PROVISIONER_INSTANCE_ID": instance_id,
                "PROVISIONER_DOCKER__NETWORK": NETWORK,
                "PROVISIONER_GATEWAY__PORT": str(port),
                "PROVISIONER_GATEWAY__WORKERS": str(workers),
                # The gateway needs no Docker engine: routes are in the database.
                "PROVISIONER_DOCKER__HOST": "unix:///nonexistent/docker.sock",
                "DOCKER_HOST": "unix:///nonexistent/docker.sock",
            }
            env.pop("PROVISIONER_GATEWAY__TOKEN", None)
            env["PROVISIONER_GATEWAY__INSECURE_NO_AUTH"] = "true"  # no auth to measure; it binds loopback
            name = "gateway" if len(worker_counts) == 1 else f"gateway x{workers}"
            gateways[name] = cleanup.enter_context(gateway_process(env, port))
        streams = [
            Stream(
                {
                    "direct": f"ws://{stream.ip}:6080/websockify",
                    **{
                        name: gw.replace("http://", "ws://") + f"/vnc/{session_id}/websockify"
                        for name, gw in gateways.items()
                    },
                },
                stream_secrets[session_id],
            )
            for session_id, stream in zip(session_ids, ready, strict=True)
        ]
        load = os.getloadavg()
        results = measure(streams, rounds=rounds, frames=frames)
        load_after = os.getloadavg()
    direct = results["direct"]
    print(
        f"{count} stream(s) at once, {rounds} latency rounds and {frames} full frames each, gateway "
        f"workers {args.workers}; load average {load[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(f"{'path':11} {'rtt median ms':>14} {'rtt p99 ms':>11} {'aggregate MiB/s':>16}")
    for r in results.values():
        print(f"{r.name:11} {r.latency(0.5):14.3f} {r.latency(0.99):11.3f} {r.mib_s:16.1f}")
    for name in gateways:
        through = results[name]
        print(
            f"{name}: added latency median {through.latency(0.5) - direct.latency(0.5):.3f} ms, "
            f"p99 {through.latency(0.99) - direct.latency(0.99):.3f} ms; "
            f"aggregate throughput ratio {name}/direct: {through.mib_s / direct.mib_s:.2f}"
        )


if __name__ == "__main__":
    main()
