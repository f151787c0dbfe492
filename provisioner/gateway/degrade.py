"""The gateway degrades, it never breaks: every failure of a dependency becomes a 503 with a reason.

    database (SQLAlchemy/psycopg)         -> 503 "database unavailable"
    Prefect API (OrchestratorError, HTTP) -> 503 "orchestrator unavailable"
    anything else                         -> 503 "internal error" (logged with its traceback)

Each reply carries Retry-After and is JSON for programs, the HTML page for browsers. Never 500 or
502. The exception text is logged, never sent: it may name hosts or users.
"""

from __future__ import annotations

import logging

import httpx
from prefect.exceptions import PrefectHTTPStatusError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner.gateway.auth import redact
from provisioner.gateway.pages import error_reply
from provisioner.prefect_api.orchestrator import OrchestratorError

log = logging.getLogger(__name__)

DATABASE_DOWN = "database unavailable"
ORCHESTRATOR_DOWN = "orchestrator unavailable"
INTERNAL = "internal error"


def classify(exc: BaseException) -> tuple[str, str]:
    """(reason, detail) of a failure, both safe to show to a client."""
    if isinstance(exc, (DBAPIError, SQLAlchemyError)):
        return DATABASE_DOWN, "the session store did not answer; try again shortly"
    if isinstance(exc, (OrchestratorError, httpx.HTTPError, PrefectHTTPStatusError)):
        return ORCHESTRATOR_DOWN, "the Prefect API did not answer; try again shortly"
    return INTERNAL, "the gateway hit an unexpected error; try again shortly"


def dependency_failure(exc: BaseException) -> bool:
    return classify(exc)[0] != INTERNAL


class Degrade:
    """ASGI middleware: an exception escaping a route becomes a 503 (or a refused WebSocket)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] in ("http.response.start", "websocket.accept", "websocket.close"):
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            reason, detail = classify(exc)
            if reason == INTERNAL:
                log.exception("%s %s failed", scope.get("method", "WS"), redact(scope.get("path", "")))
            else:
                log.warning(
                    "%s %s: %s (%s: %s)",
                    scope.get("method", "WS"),
                    redact(scope.get("path", "")),  # a webhook path carries its secret
                    reason,
                    type(exc).__name__,
                    exc,
                )
            if started:
                return
            reply = error_reply(HTTPConnection(scope), 503, reason, detail=detail)
            if scope["type"] == "http":
                await reply(scope, receive, send)
            elif "websocket.http.response" in scope.get("extensions", {}):
                await send(
                    {"type": "websocket.http.response.start", "status": 503, "headers": reply.raw_headers}
                )
                await send({"type": "websocket.http.response.body", "body": reply.body})
            else:
                await send({"type": "websocket.close", "code": 1013})
