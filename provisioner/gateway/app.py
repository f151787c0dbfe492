"""The stream gateway: one ASGI app (starlette) in front of the sessions' noVNC streams.

Routes: GET /sessions, GET|DELETE /sessions/{id}, GET /sessions/{id}/stream, POST /sessions,
/vnc/{id}/... (HTTP and WebSocket proxy), GET /healthz (liveness), GET /readyz (readiness),
GET /version, GET /metrics (Prometheus). Every reply carries X-Provisioner-Version; HTML replies
carry Cache-Control: no-store (gateway.headers). Middleware, outermost first: StandardHeaders,
Degrade (any failure -> 503), BodyLimit (413 over 64 KiB), BearerAuth. Served by uvicorn:
``python -m gateway``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provisioner.gateway import another_code, api, metrics, proxy, webhooks
from provisioner.gateway.auth import BearerAuth, redact
from provisioner.gateway.degrade import Degrade
from provisioner.gateway.headers import StandardHeaders
from provisioner.gateway.health import healthz, readyz
from provisioner.gateway.limits import BodyLimit
from provisioner.gateway.runs import FlowRuns
from provisioner.gateway.service import Gateway
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
    token = deps.settings.gateway.token

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/version", version),
            *api.routes,
            *another_code.routes,
            *webhooks.routes,
            *metrics.routes,
            *proxy.routes,
        ],
        middleware=[
            Middleware(StandardHeaders),
            Middleware(Degrade),
            Middleware(BodyLimit),
            Middleware(BearerAuth, token=token.get_secret_value() if token else None),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


class RedactTokens(logging.Filter):
    """Access-log lines carry the query string; ``?token=`` must not reach the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact(str(record.msg))
        return True


def main() -> None:
    """Serve the gateway on settings.gateway.host:port."""
    try:
        deps = get_deps()
    except IdentityError as exc:
        raise SystemExit(f"gateway: {exc}") from None
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    uvicorn.run(
        create_app(deps),
        host=deps.settings.gateway.host,
        port=deps.settings.gateway.port,
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # VNC frames are already encoded; deflate only costs CPU
        proxy_headers=False,
        server_header=False,
    )
