"""Network probes behind the readiness checks: the RFB banner, noVNC's page, the WebSocket relay.

Each probe either returns what it saw or raises ProbeFailed with a one-line reason; the runtime
loops over them until its deadline and reports the last reason in NotReady.
"""

from __future__ import annotations

import re
import socket

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

RFB_BANNER_RE = re.compile(rb"^RFB \d{3}\.\d{3}\n$")


class ProbeFailed(Exception):
    """One probe attempt failed; the message says why."""


def check_banner(data: bytes, where: str) -> str:
    if not RFB_BANNER_RE.match(data):
        raise ProbeFailed(f"{where} answered {data[:40]!r}, not an RFB banner")
    return data.decode("ascii").strip()


def read_rfb_banner(host: str, port: int, *, timeout_s: float = 2.0) -> str:
    """Connect to a VNC server and return its protocol banner, e.g. "RFB 003.008"."""
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            data = b""
            while len(data) < 12:
                chunk = sock.recv(12 - len(data))
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise ProbeFailed(f"VNC {where}: {exc}") from exc
    return check_banner(data, f"VNC {where}")


def fetch_page(url: str, *, timeout_s: float = 2.0, headers: dict[str, str] | None = None) -> None:
    """GET a page and require HTTP 200."""
    try:
        response = httpx.get(url, timeout=timeout_s, headers=headers)
    except httpx.HTTPError as exc:
        raise ProbeFailed(f"GET {url}: {exc!r}") from exc
    if response.status_code != 200:
        raise ProbeFailed(f"GET {url}: HTTP {response.status_code}")


def read_banner_over_websocket(
    url: str, *, timeout_s: float = 3.0, headers: dict[str, str] | None = None
) -> str:
    """Open the websockify relay (subprotocol "binary") and return the RFB banner it relays."""
    try:
        with ws_connect(
            url, subprotocols=["binary"], open_timeout=timeout_s, close_timeout=1, additional_headers=headers
        ) as ws:
            if ws.subprotocol != "binary":
                raise ProbeFailed(f"{url}: server chose subprotocol {ws.subprotocol!r}, not 'binary'")
            data = b""
            while len(data) < 12:
                message = ws.recv(timeout=timeout_s)
                data += message if isinstance(message, bytes) else message.encode()
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise ProbeFailed(f"WebSocket {url}: {exc!r}") from exc
    return check_banner(data[:12], f"WebSocket {url}")
