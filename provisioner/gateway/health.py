"""/healthz: the process answers (liveness). /readyz: the database and the Prefect API answer
(readiness), with a reason for each; 503 with Retry-After while any does not. No Docker engine is
checked: the gateway has none (stream routes are in the database; a stream that does not answer
is that session's 503, not the gateway's)."""

from __future__ import annotations

import asyncio

from prefect.settings import get_current_settings
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from provisioner.gateway.degrade import classify
from provisioner.gateway.pages import RETRY_AFTER_S
from provisioner.gateway.service import Gateway

CHECK_TIMEOUT_S = 3.0
OK = "ok"


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def _database(gw: Gateway) -> str:
    def ping() -> None:
        with gw.deps.sessions() as db:
            db.execute(text("SELECT 1"))

    await run_in_threadpool(ping)
    return OK


async def _prefect(gw: Gateway) -> str:
    api_url = getattr(gw.runs, "api_url", None) or get_current_settings().api.url
    if not api_url:
        return "PREFECT_API_URL is not set"
    assert gw.http is not None
    reply = await gw.http.get(f"{api_url.rstrip('/')}/health", timeout=CHECK_TIMEOUT_S)
    return OK if reply.status_code == 200 else f"the Prefect API answered HTTP {reply.status_code}"


async def _run(check, gw: Gateway) -> str:
    try:
        return await asyncio.wait_for(check(gw), CHECK_TIMEOUT_S + 1)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # noqa: BLE001 - every failure is a reason, never a crash
        return classify(exc)[0]


async def readyz(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    names = ("database", "prefect")
    results = await asyncio.gather(*(_run(check, gw) for check in (_database, _prefect)))
    checks = dict(zip(names, results, strict=True))
    ready = all(result == OK for result in results)
    headers = {} if ready else {"Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse(
        {"ready": ready, "checks": checks}, status_code=200 if ready else 503, headers=headers
    )
