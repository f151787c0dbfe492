"""Response headers every gateway reply carries: the version, and no caching of HTML pages.

A browser reloading a cached ``vnc.html`` or 503 page would show a stale "Failed to connect" or
an error that is already over, so HTML replies (ours and the proxied noVNC pages) are sent with
``Cache-Control: no-store``; noVNC's scripts and images keep the stream container's own headers.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner.settings.version import VERSION

VERSION_HEADER = "X-Provisioner-Version"


class StandardHeaders:
    """ASGI middleware adding the version header, and ``Cache-Control: no-store`` on HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[VERSION_HEADER] = VERSION
                if headers.get("content-type", "").startswith("text/html"):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
