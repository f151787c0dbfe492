"""The one owner check: every route that names a session goes through ``owned``.

While the database does not answer, the last known owner of a session is used (for
``gateway.route_keep_s``), as its last known stream route is. A caller may reach a session when it owns it, is an operator, or came with that session's link
(auth.Caller.may_see). Anyone else gets exactly the reply a session that does not exist gets
(404 "unknown session"), so a session id tells nothing to whoever does not own it. ``create_app``
refuses to build an app with a ``{session_id}`` route whose endpoint skips the check, and a test
walks every declared route as a stranger.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from provisioner.gateway.auth import caller_of
from provisioner.gateway.pages import error_reply
from provisioner.gateway.upstream import valid_session_id
from provisioner.store.models import SessionRow

OWNER_CHECKED = "__owner_checked__"
SESSION_PARAM = "{session_id"

Endpoint = Callable[[Any], Awaitable[Any]]


def unknown_session(conn: HTTPConnection, session_id: str) -> Response:
    """The reply for a session that does not exist, or that the caller may not see."""
    if not valid_session_id(session_id):
        return error_reply(conn, 404, "unknown session", detail="not a session id")
    return error_reply(conn, 404, "unknown session", session_id=session_id)


async def deny_websocket(websocket: WebSocket, reply: Response) -> None:
    """Refuse a WebSocket handshake with ``reply`` (or a close when the server cannot send one)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(reply)
    else:
        await websocket.close(code=1013 if reply.status_code == 503 else 1008)


async def may_see(conn: HTTPConnection, session_id: str) -> bool:
    """True when the session exists and the caller may see it."""
    if not valid_session_id(session_id):
        return False
    gateway = conn.app.state.gateway

    def read() -> str | None:
        with gateway.deps.sessions() as db:
            row = db.get(SessionRow, session_id)
            return None if row is None else row.owner

    owner = await run_in_threadpool(gateway.owners.read, session_id, read)
    return owner is not None and caller_of(conn).may_see(session_id, owner)


def owned(endpoint: Endpoint) -> Endpoint:
    """The endpoint, reached only by callers who may see the path's session."""

    @functools.wraps(endpoint)
    async def checked(conn: Any) -> Any:
        session_id = conn.path_params["session_id"]
        if await may_see(conn, session_id):
            return await endpoint(conn)
        reply = unknown_session(conn, session_id)
        if isinstance(conn, WebSocket):
            await deny_websocket(conn, reply)
            return None
        return reply

    setattr(checked, OWNER_CHECKED, True)
    return checked


def operators_only(endpoint: Endpoint) -> Endpoint:
    """The endpoint, reached only by operators (clients get 403)."""

    @functools.wraps(endpoint)
    async def checked(conn: Any) -> Any:
        if not caller_of(conn).operator:
            return error_reply(conn, 403, "operators only", detail="this route needs an operator token")
        return await endpoint(conn)

    return checked


def unchecked_session_routes(routes: Iterable[BaseRoute]) -> list[str]:
    """Paths of routes naming a session whose endpoint does not go through ``owned``."""
    return [
        route.path
        for route in routes
        if isinstance(route, Route | WebSocketRoute)
        and SESSION_PARAM in route.path
        and not getattr(route.endpoint, OWNER_CHECKED, False)
    ]
