"""Requests a browser could be tricked into sending are refused before anything reads them.

    Host not the public URL's, not loopback, not in gateway.allowed_hosts   -> 400 (DNS rebinding)
    a WebSocket whose Origin is not the public URL's nor the gateway's own  -> handshake refused (403)
    a POST/DELETE/PUT/PATCH body that is not application/json               -> 415

A page on another site can send a ``text/plain`` POST without asking first (no CORS preflight);
requiring JSON makes the browser ask, and the gateway never answers that question. Provider
webhooks (their own secret, their own parser) are exempt from the JSON rule.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from provisioner.gateway.auth import OPEN_PREFIXES, is_loopback
from provisioner.gateway.pages import error_reply
from provisioner.settings import GatewaySettings

_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON = "application/json"


def _host_name(host: str) -> str:
    """The name part of a Host header (``[::1]:8080`` -> ``::1``), lowercased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Guard:
    """ASGI middleware: Host, WebSocket Origin and JSON-body checks (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, settings: GatewaySettings) -> None:
        self.app = app
        self.public_origin = _origin(settings.public_url)
        public_host = urlsplit(settings.public_url).hostname or ""
        self.hosts = {public_host.lower(), *(h.lower() for h in settings.allowed_hosts)}
        if settings.host not in ("0.0.0.0", "::", ""):
            self.hosts.add(settings.host.lower())

    def host_allowed(self, host: str) -> bool:
        name = _host_name(host)
        return bool(name) and (name in self.hosts or is_loopback(name))

    def origin_allowed(self, origin: str, host: str) -> bool:
        """The public URL's origin, or the origin of the gateway's own address (the Host the
        request came to, already checked)."""
        origin = origin.lower()
        return origin == self.public_origin or origin in (f"http://{host.lower()}", f"https://{host.lower()}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        host = conn.headers.get("host", "")
        reply: Response | None = None
        if not self.host_allowed(host):
            reply = error_reply(
                conn, 400, "unknown host", detail="this gateway does not answer for that Host"
            )
        elif scope["type"] == "websocket":
            origin = conn.headers.get("origin")
            if origin is not None and not self.origin_allowed(origin, host):
                reply = error_reply(
                    conn, 403, "foreign origin", detail="WebSockets open from the gateway's pages only"
                )
        elif scope["method"] in _WITH_BODY and not scope["path"].startswith(OPEN_PREFIXES):
            reply = self._body_type(conn)
        if reply is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008})
                return
        await reply(scope, receive, send)

    @staticmethod
    def _body_type(conn: HTTPConnection) -> Response | None:
        """415 unless the body is JSON; a request without a body and without a type is fine."""
        kind = conn.headers.get("content-type", "").split(";")[0].strip().lower()
        has_body = (
            conn.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in conn.headers
        )
        if kind == _JSON or (not kind and not has_body):
            return None
        return error_reply(
            conn, 415, "unsupported media type", detail="send the body as application/json (Content-Type)"
        )
