"""Optional bearer-token auth for every route (HTTP and WebSocket).

With a token configured a request needs ``Authorization: Bearer <token>``. A browser cannot send
that header when it opens a stream, so under /vnc/ a ``?token=`` query parameter is accepted too;
the first such page load sets an HttpOnly cookie holding an HMAC of the token (never the token),
which then authorizes noVNC's assets and its WebSocket. Comparisons use hmac.compare_digest; the
token is never logged (see ``redact``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE_NAME = "provisioner_vnc"
VNC_PREFIX = "/vnc/"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# Provider webhooks carry their own secret in the path (gateway.webhooks checks it).
OPEN_PREFIXES = ("/webhooks/",)
_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']*")
_WEBHOOK_SECRET = re.compile(r"(/webhooks/[^/\s]*/)[^\s?\"']*")


def redact(text: str) -> str:
    """Hide ``token=...`` values and webhook secrets, e.g. in access-log lines."""
    return _WEBHOOK_SECRET.sub(r"\1***", _TOKEN_IN_TEXT.sub(r"\1***", text))


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"provisioner-gateway-vnc-cookie", hashlib.sha256).hexdigest()


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class BearerAuth:
    """ASGI middleware: 401 (or a refused WebSocket handshake) without the token."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token or None
        self.cookie = cookie_value(token) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            self.token is None
            or scope["type"] not in ("http", "websocket")
            or path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        via = self._authorized_by(scope)
        if via is None:
            await self._refuse(scope, receive, send)
            return
        if via == "query" and scope["type"] == "http":
            send = self._setting_cookie(send)
        await self.app(scope, receive, send)

    def _authorized_by(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _equal(credentials.strip(), self.token):
            return "header"
        if not scope["path"].startswith(VNC_PREFIX):
            return None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if "token" in query and _equal(query["token"], self.token):
            return "query"
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just not a credential
            return None
        morsel = cookies.get(COOKIE_NAME)
        if morsel is not None and _equal(morsel.value, self.cookie):
            return "cookie"
        return None

    def _setting_cookie(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append(
                    "set-cookie",
                    f"{COOKIE_NAME}={self.cookie}; Path={VNC_PREFIX}; HttpOnly; SameSite=Strict",
                )
            await send(message)

        return wrapped

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"reason": "unauthorized", "detail": "send Authorization: Bearer <token>"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="provisioner"'},
        )
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" not in scope.get("extensions", {}):
                # Close before accepting: the server answers the handshake with 403.
                await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
                return
        await response(scope, receive, send)
