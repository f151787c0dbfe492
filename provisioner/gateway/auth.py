"""Who is calling: every route but the health checks and provider webhooks needs a caller.

    Authorization: Bearer <token>     the configured gateway token (the operator "operator"), or a
                                      client's token (store.clients), read from the database on
                                      every request so a revoked token is refused at once
    a session link                    ``/s/<id>?link=...`` (steps.links) on the session page sets a
                                      cookie ``pvl_<id>`` that opens that session's page, stream,
                                      status, code and release only, as its owner, until it expires,
                                      the session ends or the owner is revoked
    neither                           401 (a WebSocket handshake is refused)

A token in a query string is never accepted. With ``gateway.insecure_no_auth`` (loopback only,
see ``startup_refusal``) every caller is the operator. The caller is put in the ASGI scope's state
(``caller_of``); what a caller may see is decided in one place, gateway.owners.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from provisioner.gateway.pages import error_reply
from provisioner.steps.deps import Deps
from provisioner.steps.links import LINK_PARAM, BadLink, link_key, verify
from provisioner.store import clients as clientrepo
from provisioner.store.clients import RESERVED_NAMES
from provisioner.store.models import TOKEN_OPERATOR, SessionRow
from provisioner.store.states import ENDING, State

log = logging.getLogger(__name__)
T = TypeVar("T")

LINK_COOKIE_PREFIX = "pvl_"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# Provider webhooks carry their own secret in the path (gateway.webhooks checks it).
OPEN_PREFIXES = ("/webhooks/",)
PAGE_PREFIX = "/s/"
# Paths a session link may open: the page, its stream, its status, code and release.
_SESSION_PATH = re.compile(r"^/(?:s|vnc|sessions)/([a-z][a-z0-9]{11})(?:/|$)")
_SECRET_IN_TEXT = re.compile(r"((?:token|link)=)[^&\s\"']*")
_WEBHOOK_SECRET = re.compile(r"(/webhooks/[^/\s]*/)[^\s?\"']*")
_BEARER_IN_TEXT = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide ``token=``/``link=`` values, bearer tokens and webhook secrets, e.g. in log lines."""
    text = _SECRET_IN_TEXT.sub(r"\1***", text)
    return _BEARER_IN_TEXT.sub(r"\1***", _WEBHOOK_SECRET.sub(r"\1***", text))


@dataclass(frozen=True)
class Caller:
    """Who is calling: a client (its name owns the sessions it starts) or an operator; a caller
    that came with a session link may reach that one session only."""

    name: str
    operator: bool
    client: clientrepo.Client | None = None
    session_id: str | None = None  # set when authorized by a session link

    def may_see(self, session_id: str, owner: str) -> bool:
        """The one rule: a link opens its own session; an operator sees every session; a client
        its own."""
        if self.session_id is not None and self.session_id != session_id:
            return False
        return self.operator or owner == self.name


TOKEN_CALLER = Caller(TOKEN_OPERATOR, operator=True)


def caller_of(conn: HTTPConnection) -> Caller:
    """The authenticated caller of a request (set by Authenticate)."""
    return conn.scope["state"]["caller"]


class LastKnown:
    """Answers read from the database, kept to be used only while the database does not answer
    (for ``gateway.route_keep_s``), so an open stream survives a short outage as its route does."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._entries: dict[object, tuple[float, object]] = {}

    def read(self, key: object, fetch: Callable[[], T]) -> T:
        """``fetch()``, remembered; its last answer for ``key`` when the database fails."""
        try:
            value = fetch()
        except SQLAlchemyError:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - entry[0] > self.keep_s:
                raise
            log.warning(
                "database unavailable: using the last known answer (%.0f s old)", time.monotonic() - entry[0]
            )
            return entry[1]  # type: ignore[return-value]
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), value)
        return value


def link_cookie(session_id: str) -> str:
    return f"{LINK_COOKIE_PREFIX}{session_id}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def startup_refusal(deps: Deps) -> str | None:
    """Why the gateway must not start with these settings (None: it may). It never starts open
    by accident: no token and no client means no service, unless insecure_no_auth on loopback."""
    gateway = deps.settings.gateway
    has_token = gateway.token is not None and bool(gateway.token.get_secret_value())
    if gateway.insecure_no_auth:
        if not is_loopback(gateway.host):
            return (
                f"PROVISIONER_GATEWAY__INSECURE_NO_AUTH=true serves everyone, so it is only allowed on a "
                f"loopback address, not {gateway.host}: set PROVISIONER_GATEWAY__HOST=127.0.0.1, or "
                f"set PROVISIONER_GATEWAY__TOKEN (or add a client: provisioner clients add NAME) instead"
            )
        return None
    if has_token:
        return None
    with deps.sessions() as db:
        clients = clientrepo.count_active_clients(db)
    if clients == 0:
        return (
            "the gateway has no way to tell callers apart: set PROVISIONER_GATEWAY__TOKEN (an operator "
            "token) or add a client (provisioner clients add NAME); for a local trial only, "
            "PROVISIONER_GATEWAY__INSECURE_NO_AUTH=true with PROVISIONER_GATEWAY__HOST=127.0.0.1"
        )
    if link_key(deps.settings) is None:
        return "session links need a key: set PROVISIONER_GATEWAY__LINK_SECRET (the same on every worker)"
    return None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookie(headers: dict[str, str], name: str) -> str | None:
    cookies = SimpleCookie()
    try:
        cookies.load(headers.get("cookie", ""))
    except Exception:  # noqa: BLE001 - a malformed cookie header is just not a credential
        return None
    morsel = cookies.get(name)
    return morsel.value if morsel is not None else None


def secure_cookies(public_url: str) -> bool:
    return urlsplit(public_url).scheme == "https"


class Authenticate:
    """ASGI middleware: finds the caller (see the module docstring) or refuses the request."""

    def __init__(self, app: ASGIApp, *, deps: Deps) -> None:
        self.app = app
        self.deps = deps
        gateway = deps.settings.gateway
        self.open = gateway.insecure_no_auth
        self.token = gateway.token.get_secret_value() if gateway.token else None
        self.key = link_key(deps.settings)
        self.secure = secure_cookies(gateway.public_url)
        self.last_known = LastKnown(gateway.route_keep_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self.open:
            caller, why = TOKEN_CALLER, ""
        else:
            caller, why = await self._bearer(headers)
        link_set: tuple[str, str, int] | None = None
        if caller is None and (match := _SESSION_PATH.match(path)):
            caller, why, link_set = await self._link(scope, headers, match.group(1), path)
        if caller is None:
            await self._refuse(scope, receive, send, why)
            return
        scope.setdefault("state", {})["caller"] = caller
        if link_set is not None and scope["type"] == "http":
            send = self._setting_cookie(send, *link_set)
        await self.app(scope, receive, send)

    async def _bearer(self, headers: dict[str, str]) -> tuple[Caller | None, str]:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        given = credentials.strip()
        if scheme.lower() != "bearer" or not given:
            return None, "send Authorization: Bearer <token>, or open the session's link"
        if self.token and hmac.compare_digest(given.encode(), self.token.encode()):
            return TOKEN_CALLER, ""

        def read() -> clientrepo.Client | None:
            with self.deps.sessions() as db:
                return clientrepo.client_for_token(db, given)

        client = await run_in_threadpool(self.last_known.read, ("token", clientrepo.token_hash(given)), read)
        if client is None:
            return None, "unknown or revoked token"
        return Caller(client.name, operator=client.operator, client=client), ""

    async def _link(
        self, scope: Scope, headers: dict[str, str], session_id: str, path: str
    ) -> tuple[Caller | None, str, tuple[str, str, int] | None]:
        """A session link from the page's query (which sets the cookie) or from the cookie."""
        from_query = None
        if path.startswith(PAGE_PREFIX) and scope["type"] == "http":
            from_query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))).get(LINK_PARAM)
        value = from_query or _cookie(headers, link_cookie(session_id))
        if not value:
            return None, "send Authorization: Bearer <token>, or open the session's link", None
        if self.key is None:
            return None, "session links are off: no link key", None

        def read() -> tuple[str, str, bool] | None:
            with self.deps.sessions() as db:
                row = db.get(SessionRow, session_id)
                if row is None:
                    return None
                owner_active = (
                    row.owner in RESERVED_NAMES or clientrepo.active_client(db, row.owner) is not None
                )
                return row.owner, row.state, owner_active

        found = await run_in_threadpool(self.last_known.read, ("link", session_id), read)
        if found is None:
            return None, "not a link to this session", None
        owner, state, owner_active = found
        try:
            expires = verify(self.key, session_id, owner, value)
        except BadLink as exc:
            return None, str(exc), None
        if State(state) in ENDING:
            return None, f"the session has ended ({state}); its link no longer opens it", None
        if not owner_active:
            return None, "the session's owner has been revoked", None
        caller = Caller(owner, operator=False, session_id=session_id)
        return caller, "", (session_id, value, expires) if from_query else None

    def _setting_cookie(self, send: Send, session_id: str, value: str, expires: int) -> Send:
        max_age = max(int(expires - time.time()), 0)
        flags = f"Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict" + ("; Secure" if self.secure else "")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(
                    "set-cookie", f"{link_cookie(session_id)}={value}; {flags}"
                )
            await send(message)

        return wrapped

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, why: str) -> None:
        response = error_reply(HTTPConnection(scope), 401, "unauthorized", detail=why)
        response.headers["WWW-Authenticate"] = 'Bearer realm="provisioner"'
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" not in scope.get("extensions", {}):
                # Close before accepting: the server answers the handshake with 403.
                await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
                return
        await response(scope, receive, send)
