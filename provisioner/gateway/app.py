"""The stream gateway: one ASGI app (starlette) in front of the sessions' noVNC streams.

Routes: GET /sessions, POST /sessions, GET|DELETE /sessions/{id}, GET /sessions/{id}/stream,
GET|POST /sessions/{id}/code, GET /s/{id} (the session page), /vnc/{id}/... (HTTP and WebSocket
proxy), GET /healthz (liveness), GET /readyz (readiness), GET /version, GET /openapi.json (the
API's OpenAPI document), GET /metrics (Prometheus, operators). Every route naming a session goes through gateway.owners. Every reply carries
X-Provisioner-Version; HTML replies carry Cache-Control: no-store (gateway.headers). Middleware,
outermost first: StandardHeaders, Degrade (any failure -> 503), Guard (Host, WebSocket Origin,
JSON bodies), BodyLimit (413 over 64 KiB), Authenticate (who calls). It refuses to start open
(auth.startup_refusal). Served by uvicorn: ``python -m provisioner.gateway``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import uvicorn
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provisioner.gateway import another_code, api, metrics, openapi, proxy, session_page, webhooks
from provisioner.gateway.auth import Authenticate, redact, startup_refusal
from provisioner.gateway.degrade import Degrade
from provisioner.gateway.guard import Guard
from provisioner.gateway.headers import StandardHeaders
from provisioner.gateway.health import healthz, readyz
from provisioner.gateway.limits import BodyLimit
from provisioner.gateway.owners import unchecked_session_routes
from provisioner.gateway.service import Gateway
from provisioner.prefect_api.orchestrator import FlowRuns
from provisioner.settings.version import VERSION
from provisioner.steps.deps import Deps, get_deps
from provisioner.steps.spend import NO_CEILING
from provisioner.store.identity import IdentityError

log = logging.getLogger(__name__)


async def version(request: Request) -> Response:
    return JSONResponse({"version": VERSION})


def create_app(deps: Deps | None = None, runs: FlowRuns | None = None) -> Starlette:
    """The gateway app; collaborators default to the process-wide ones (settings from the
    environment). It uses no Docker engine: stream routes come from the database."""
    deps = deps or get_deps()
    if deps.settings.spend.max_price is None:
        log.warning(NO_CEILING)  # once per process
    gateway = Gateway(deps, runs=runs)
    redact_server_logs()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        refusal = await run_in_threadpool(startup_refusal, deps)
        if refusal is not None:
            log.error("the gateway will not start: %s", refusal)
            raise RefusedToStart(refusal)
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/version", version),
        *openapi.routes,
        *api.routes,
        *another_code.routes,
        *session_page.routes,
        *webhooks.routes,
        *metrics.routes,
        *proxy.routes,
    ]
    if unchecked := unchecked_session_routes(routes):
        raise RuntimeError(f"routes naming a session without the owner check: {', '.join(unchecked)}")
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(StandardHeaders),
            Middleware(Degrade),
            Middleware(Guard, settings=deps.settings.gateway),
            Middleware(BodyLimit),
            Middleware(Authenticate, deps=deps),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


class RefusedToStart(RuntimeError):
    """The settings would serve callers the gateway cannot tell apart; the message says what to set."""


class RedactTokens(logging.Filter):
    """Access-log lines carry the query string and error lines the request: no token, link or
    webhook secret reaches the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact(str(record.msg))
        return True


def redact_server_logs() -> None:
    """Put RedactTokens on uvicorn's access and error logs (once)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def main() -> None:
    """Serve the gateway on settings.gateway.host:port."""
    try:
        deps = get_deps()
    except IdentityError as exc:
        raise SystemExit(f"gateway: {exc}") from None
    try:
        refusal = startup_refusal(deps)
    except SQLAlchemyError as exc:
        refusal = f"the database does not answer ({type(exc).__name__}), so no client can be checked"
    if refusal is not None:
        raise SystemExit(f"gateway: will not start: {refusal}")
    workers = deps.settings.gateway.workers
    uvicorn.run(
        # Several workers: each process builds its own app from the same settings (a factory).
        create_app(deps) if workers == 1 else f"{__name__}:create_app",
        factory=workers > 1,
        workers=workers,
        host=deps.settings.gateway.host,
        port=deps.settings.gateway.port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # VNC frames are already encoded; deflate only costs CPU
        proxy_headers=False,
        server_header=False,
    )
