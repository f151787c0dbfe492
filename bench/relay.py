"""bench/relay.py: what the gateway's WebSocket relay alone adds, without Docker or VNC.

A WebSocket echo server, and a uvicorn app (the gateway's settings: websockets-sansio, no
deflate) whose one route relays to it with provisioner.gateway.proxy.relay, each in its own
process. The client opens --streams connections each way and, round by round (order alternating),
sends one small message on all of them at once and waits for every echo: the same load shape as
`bench/gateway.py --streams 20`, without the VNC server's ~25 ms answer in every round trip. Prints
the round trip median and p99 per path and the relay's added median, on asyncio and on uvloop.
Runtime: well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection  # noqa: E402
from websockets.asyncio.server import serve as ws_serve  # noqa: E402

from provisioner.gateway.proxy import relay  # noqa: E402
from tests.harness.services import free_port  # noqa: E402

OPTIONS = {"compression": None, "ping_interval": None}


def echo_server(port: int) -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with ws_serve(echo, "127.0.0.1", port, **OPTIONS):
            await asyncio.Future()

    asyncio.run(main())


def relay_server(port: int, upstream: int, loop: str) -> None:
    async def relayed(websocket: WebSocket) -> None:
        remote = await connect(f"ws://127.0.0.1:{upstream}", proxy=None, **OPTIONS)
        await websocket.accept()
        try:
            await relay(websocket, remote)
        finally:
            await remote.close()

    app = Starlette(routes=[WebSocketRoute("/relay", relayed)])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        loop=loop,
        log_level="error",
    )


async def measure(relay: int, echo: int, streams: int, rounds: int) -> dict[str, list[float]]:
    paths = {
        "relay": [
            await connect(f"ws://127.0.0.1:{relay}/relay", proxy=None, **OPTIONS) for _ in range(streams)
        ],
        "direct": [await connect(f"ws://127.0.0.1:{echo}", proxy=None, **OPTIONS) for _ in range(streams)],
    }
    found: dict[str, list[float]] = {"relay": [], "direct": []}

    async def round_trip(ws, path: str) -> None:
        started = time.perf_counter()
        await ws.send(b"\x03\x00\x00\x00\x00\x00\x01\x00\x01")  # a 1x1 FramebufferUpdateRequest's size
        await ws.recv()
        found[path].append(time.perf_counter() - started)

    for k in range(rounds):
        for path in ("relay", "direct") if k % 2 else ("direct", "relay"):
            await asyncio.gather(*(round_trip(ws, path) for ws in paths[path]))
    for conns in paths.values():
        for ws in conns:
            await ws.close()
    return found


def run(loop: str, streams: int, rounds: int) -> float:
    echo, relay = free_port(), free_port()
    procs = [
        multiprocessing.Process(target=echo_server, args=(echo,), daemon=True),
        multiprocessing.Process(target=relay_server, args=(relay, echo, loop), daemon=True),
    ]
    for proc in procs:
        proc.start()
    try:
        time.sleep(3)  # both listening (a failed start shows as a refused connect below)
        found = asyncio.run(measure(relay, echo, streams, rounds))
    finally:
        for proc in procs:
            proc.terminate()
    medians = {path: statistics.median(values) * 1000 for path, values in found.items()}
    for path, values in found.items():
        ordered = sorted(values)
        print(f"| {loop} | {path} | {medians[path]:.3f} | {ordered[int(len(ordered) * 0.99)] * 1000:.3f} |")
    return medians["relay"] - medians["direct"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"{args.streams} streams, {args.rounds} rounds; times in ms")
    print("| loop | path | median | p99 |\n| --- | --- | --- | --- |")
    added = {loop: run(loop, args.streams, args.rounds) for loop in ("asyncio", "uvloop")}
    for loop, ms in added.items():
        print(f"{loop}: the relay adds {ms:.3f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
