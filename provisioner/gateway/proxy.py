"""/vnc/{session_id}/...: HTTP and WebSocket reverse proxy to the session's stream container.

The upstream is the route recorded in the database for the session's device, probed as that
device's own stream (gateway.upstream), never taken from the request; the session id must match the
store's pattern and the path may not climb out with ``..``. Addresses are reused, so every request
proves it reached the device's own stream: HTTP goes to the stream's ``/vnc/<device id>/`` copy of
noVNC (``/vnc/<session>/app/ui.js`` -> ``/vnc/<device>/app/ui.js``: another container answers 404),
and a WebSocket is opened only after a fresh probe (websockify relays on any path). When the session is
not live or its stream does not answer, the reply is a 503 page (or a refused WebSocket handshake
with a 503 body), never a 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import quote, urlencode

import httpx
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from provisioner.gateway import novnc, rfb
from provisioner.gateway.owners import owned
from provisioner.gateway.pages import error_reply
from provisioner.gateway.service import Gateway, UnknownSession
from provisioner.gateway.upstream import STREAM_DOWN, StreamUnavailable, Upstream, valid_session_id
from provisioner.steps.links import LINK_PARAM
from provisioner.steps.streams import vnc_page_path
from provisioner.store.states import ENDING

_ENDED_REASONS = frozenset(state.value for state in ENDING)


def unavailable_reply(conn: Request | WebSocket, exc: StreamUnavailable, session_id: str) -> Response:
    """410 for a session that has ended (its stream never comes back), else 503 (it may)."""
    if exc.reason in _ENDED_REASONS:
        return error_reply(conn, 410, "ended", detail=f"the session is {exc.reason}", session_id=session_id)
    return error_reply(conn, 503, exc.reason, detail=exc.detail, session_id=session_id)


log = logging.getLogger(__name__)

# Request headers passed upstream; everything else (Authorization, Cookie, Host...) stays here.
_FORWARD_REQUEST = ("accept", "accept-language", "if-modified-since", "if-none-match", "range", "user-agent")
# Response headers passed back; hop-by-hop and upstream server details are dropped.
_FORWARD_RESPONSE = (
    "content-type",
    "last-modified",
    "etag",
    "cache-control",
    "expires",
    "content-range",
    "accept-ranges",
)
WS_OPEN_TIMEOUT_S = 5.0
WS_MAX_MESSAGE = 16 * 1024 * 1024
RFB_HANDSHAKE_S = 10.0


class UnsafePath(ValueError):
    pass


def upstream_path(path: str) -> str:
    """The container path for the part after /vnc/<id>/, quoted; refuses anything that climbs."""
    if "\\" in path or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise UnsafePath(path)
    if any(segment in (".", "..") for segment in path.split("/")):
        raise UnsafePath(path)
    return "/" + quote(path.lstrip("/"), safe="/-._~")


def _query_without_token(conn: Request | WebSocket) -> str:
    pairs = [(k, v) for k, v in conn.query_params.multi_items() if k not in ("token", LINK_PARAM)]
    return urlencode(pairs)


def _target(conn: Request | WebSocket) -> tuple[str, str] | Response:
    """(session id, upstream path) or the error reply for a bad id or path."""
    session_id = conn.path_params["session_id"]
    if not valid_session_id(session_id):
        return error_reply(conn, 404, "unknown session", detail="not a session id")
    try:
        return session_id, upstream_path(conn.path_params.get("path", ""))
    except UnsafePath:
        return error_reply(conn, 400, "bad path", session_id=session_id)


async def vnc_root(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    if not valid_session_id(session_id):
        return error_reply(request, 404, "unknown session", detail="not a session id")
    return RedirectResponse(vnc_page_path(session_id), status_code=307)


async def vnc_http(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    target = _target(request)
    if isinstance(target, Response):
        return target
    session_id, path = target
    try:
        upstream = await gw.upstream(session_id)
    except UnknownSession:
        return error_reply(request, 404, "unknown session", session_id=session_id)
    except StreamUnavailable as exc:
        return unavailable_reply(request, exc, session_id)
    query = _query_without_token(request)
    url = f"http://{upstream.base}/vnc/{upstream.device_id}{path}" + (f"?{query}" if query else "")
    headers = {k: v for k in _FORWARD_REQUEST if (v := request.headers.get(k)) is not None}
    headers.update(upstream.headers)
    assert gw.http is not None
    try:
        reply = await gw.http.request(request.method, url, headers=headers)
    except httpx.HTTPError as exc:
        gw.cache.forget(session_id)
        log.info("session %s: stream %s did not answer: %r", session_id, upstream.container, exc)
        return error_reply(
            request, 503, STREAM_DOWN, detail=f"{upstream.container} does not answer", session_id=session_id
        )
    if reply.status_code >= 500:
        return error_reply(
            request,
            503,
            STREAM_DOWN,
            detail=f"{upstream.container} answered HTTP {reply.status_code}",
            session_id=session_id,
        )
    if reply.status_code == 404:
        # A missing file, or a cached address that another stream holds now: a fresh probe tells.
        try:
            await gw.upstream(session_id, probe=True)
        except StreamUnavailable as exc:
            return unavailable_reply(request, exc, session_id)
    out = {k: v for k in _FORWARD_RESPONSE if (v := reply.headers.get(k)) is not None}
    content = reply.content
    if path == novnc.PAGE and reply.status_code == 200:
        content = novnc.with_retry(content)
        out.pop("etag", None)  # the body is no longer the container's
        out.pop("last-modified", None)
    return Response(content, status_code=reply.status_code, headers=out)


async def _deny(websocket: WebSocket, reply: Response) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(reply)
    else:
        await websocket.close(code=1013 if reply.status_code == 503 else 1008)


async def vnc_websocket(websocket: WebSocket) -> None:
    gw: Gateway = websocket.app.state.gateway
    target = _target(websocket)
    if isinstance(target, Response):
        await _deny(websocket, target)
        return
    session_id, path = target
    try:
        # The WebSocket reaches the device itself: never by a cached route (addresses are reused
        # at once), always one probed now as this device's own stream.
        upstream = await gw.upstream(session_id, probe=True)
    except UnknownSession:
        await _deny(websocket, error_reply(websocket, 404, "unknown session", session_id=session_id))
        return
    except StreamUnavailable as exc:
        await _deny(websocket, unavailable_reply(websocket, exc, session_id))
        return
    query = _query_without_token(websocket)
    url = f"ws://{upstream.base}{path}" + (f"?{query}" if query else "")
    subprotocols = list(websocket.scope.get("subprotocols") or [])
    try:
        remote = await ws_connect(
            url,
            subprotocols=subprotocols or None,
            open_timeout=WS_OPEN_TIMEOUT_S,
            compression=None,
            max_size=WS_MAX_MESSAGE,
            ping_interval=None,
            proxy=None,
            additional_headers=upstream.headers,
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        gw.cache.forget(session_id)
        log.info("session %s: stream %s refused the WebSocket: %r", session_id, upstream.container, exc)
        reply = error_reply(
            websocket, 503, STREAM_DOWN, detail=f"{upstream.container} does not answer", session_id=session_id
        )
        await _deny(websocket, reply)
        return
    try:
        await websocket.accept(subprotocol=remote.subprotocol)
        if upstream.secret and not await _vnc_handshake(websocket, remote, upstream):
            return
        stamping = asyncio.create_task(gw.activity.while_open(session_id))  # an open stream is activity
        try:
            await relay(websocket, remote)
        finally:
            stamping.cancel()
    finally:
        await remote.close()


async def _vnc_handshake(websocket: WebSocket, remote: ClientConnection, upstream: Upstream) -> bool:
    """Answer the device's VNC password challenge here, then let the browser in with security
    type None (gateway.rfb); False (the browser's socket closed) when either side fails."""

    async def from_browser() -> bytes:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = message.get("bytes")
        return data if data is not None else (message.get("text") or "").encode()

    async def from_stream() -> bytes:
        data = await remote.recv()
        return data if isinstance(data, bytes) else data.encode()

    stream, browser = rfb.Reader(from_stream), rfb.Reader(from_browser)
    try:
        async with asyncio.timeout(RFB_HANDSHAKE_S):
            await rfb.authenticate(stream, remote.send, rfb.vnc_password(upstream.secret or ""))
            await rfb.greet(browser, websocket.send_bytes)
    except (rfb.RfbRefused, TimeoutError, ConnectionClosed, WebSocketDisconnect) as exc:
        log.warning("stream %s: VNC handshake failed: %s", upstream.container, type(exc).__name__)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1011)
        return False
    if rest := stream.rest():
        await websocket.send_bytes(rest)
    if rest := browser.rest():
        await remote.send(rest)
    return True


async def relay(websocket: WebSocket, remote: ClientConnection) -> None:
    """Pump messages both ways until either side closes, then close the other."""

    async def downstream_to_remote() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is not None:
                await remote.send(data)

    async def remote_to_downstream() -> None:
        async for data in remote:
            if isinstance(data, bytes):
                await websocket.send_bytes(data)
            else:
                await websocket.send_text(data)

    tasks = [asyncio.create_task(downstream_to_remote()), asyncio.create_task(remote_to_downstream())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(
                asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect, RuntimeError
            ):
                await task
    if tasks[1] in done:  # the stream side ended first: tell the browser
        code = remote.close_code if remote.close_code not in (None, 1005, 1006) else 1000
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=code)


routes = [
    Route("/vnc/{session_id}", owned(vnc_root), methods=["GET"]),
    Route("/vnc/{session_id}/{path:path}", owned(vnc_http), methods=["GET", "HEAD"]),
    WebSocketRoute("/vnc/{session_id}/{path:path}", owned(vnc_websocket)),
]
