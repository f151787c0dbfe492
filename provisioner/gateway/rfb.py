"""The gateway's part of a stream's VNC authentication (RFB 3.8, RFC 6143 section 7.1-7.2).

A device's VNC server asks for a password (its per-device secret, devices.stream_secret); the
browser's noVNC never sees it. When the gateway opens the WebSocket to the stream, it completes
VNC authentication upstream itself, then offers the browser security type None and relays the
rest (ClientInit onwards) unchanged. A stream reached without the gateway shows nothing: websockify
wants the secret, and behind it the VNC server wants the password.

    RfbRefused    the VNC server refused us (wrong password, no usable security type) or spoke
                  something else than RFB
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from provisioner.runtime.model import VNC_PASSWORD_LEN, vnc_password

__all__ = ["Reader", "RfbRefused", "authenticate", "greet", "vnc_password", "vnc_response"]

VERSION_3_8 = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC = 2


class RfbRefused(Exception):
    """The VNC server did not let us in; the message says why (never the password)."""


def vnc_response(password: str, challenge: bytes) -> bytes:
    """VNC authentication's answer: the 16-byte challenge DES-encrypted with the password, whose
    bytes are bit-reversed to make the key (the RFB protocol's quirk)."""
    raw = password.encode("latin-1")[:VNC_PASSWORD_LEN].ljust(VNC_PASSWORD_LEN, b"\0")
    key = bytes(int(f"{byte:08b}"[::-1], 2) for byte in raw)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # K1 = K2 = K3: single DES
    return encryptor.update(challenge) + encryptor.finalize()


class Reader:
    """Exact reads over a message stream (WebSocket messages split RFB anywhere)."""

    def __init__(self, receive: Callable[[], Awaitable[bytes]]) -> None:
        self._receive = receive
        self._buffer = b""

    async def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += await self._receive()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def rest(self) -> bytes:
        """What was received beyond the handshake: relayed as is."""
        data, self._buffer = self._buffer, b""
        return data


async def _refusal(reader: Reader) -> str:
    (length,) = struct.unpack(">I", await reader.read(4))
    return (await reader.read(min(length, 512))).decode("utf-8", errors="replace")


async def authenticate(reader: Reader, send: Callable[[bytes], Awaitable[None]], password: str) -> None:
    """Our side of the handshake with the VNC server, up to a successful SecurityResult."""
    banner = await reader.read(12)
    if not banner.startswith(b"RFB "):
        raise RfbRefused(f"not an RFB server: {banner[:12]!r}")
    await send(VERSION_3_8)
    (count,) = await reader.read(1)
    if count == 0:
        raise RfbRefused(f"VNC server refused: {await _refusal(reader)}")
    offered = await reader.read(count)
    if SECURITY_VNC not in offered:
        raise RfbRefused(f"VNC server offers no password authentication (types {list(offered)})")
    await send(bytes([SECURITY_VNC]))
    challenge = await reader.read(16)
    await send(vnc_response(password, challenge))
    (result,) = struct.unpack(">I", await reader.read(4))
    if result != 0:
        raise RfbRefused(f"VNC server rejected the device's password: {await _refusal(reader)}")


async def greet(reader: Reader, send: Callable[[bytes], Awaitable[None]]) -> None:
    """The browser's side: we are an RFB 3.8 server that needs no authentication."""
    await send(VERSION_3_8)
    client = await reader.read(12)
    if client in (b"RFB 003.003\n",):
        await send(struct.pack(">I", SECURITY_NONE))  # 3.3: the server decides
        return
    await send(bytes([1, SECURITY_NONE]))
    (choice,) = await reader.read(1)
    if choice != SECURITY_NONE:
        raise RfbRefused(f"the browser chose security type {choice}, not None")
    if client >= b"RFB 003.008\n":
        await send(struct.pack(">I", 0))  # SecurityResult OK (3.8 sends it for None too)
