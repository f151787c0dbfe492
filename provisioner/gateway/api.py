"""The JSON API: list and read sessions, ask for a stream, wait for a code, start provision and
release flow runs. Every route naming a session goes through gateway.owners (one owner check);
a session's owner (and operators) read its full number and its codes here, and nowhere else
outside the session page: logs, artifacts and metrics keep the number masked and never the code.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provisioner.gateway.accept import LimitReached, accept, end
from provisioner.gateway.auth import Caller, caller_of
from provisioner.gateway.limits import BadBody, parse_json_body, validation_errors
from provisioner.gateway.owners import owned
from provisioner.gateway.pages import error_reply
from provisioner.gateway.service import Gateway, UnknownSession
from provisioner.gateway.upstream import StreamUnavailable, valid_session_id
from provisioner.prefect_api.orchestrator import IDEMPOTENCY_KEY_MAX, OrchestratorError
from provisioner.steps import budgets
from provisioner.steps.checks import InvalidRequest, validate_request
from provisioner.steps.links import session_page_url
from provisioner.steps.request import ProvisionRequest, price_cap
from provisioner.steps.spend import BUDGET_EXHAUSTED, BudgetExhausted
from provisioner.steps.streams import gateway_stream_url
from provisioner.store import LeaseOutcome, LeaseRow, SessionRow, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.store import spend as spendrepo
from provisioner.store.states import ENDING

LIST_LIMIT_MAX = 500
CODE_WAIT_MAX_S = 120
CODE_POLL_S = 0.5


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def e164(phone: str | None) -> str | None:
    """A number as E.164 (``+79161234567``), whatever the provider wrote."""
    digits = re.sub(r"\D", "", phone or "")
    return f"+{digits}" if digits else None


def session_json(gw: Gateway, row: SessionRow) -> dict[str, Any]:
    """A session as its owner (or an operator) sees it: the full number, the page link; the code
    only in the single-session read (``codes_json``)."""
    return {
        "id": row.id,
        "owner": row.owner,
        "state": row.state,
        "phone": e164(row.phone_number),
        "provider": row.provider,
        "service": row.service,
        "country": row.country,
        "device_profile": row.device_profile,
        "device_id": row.device_id,
        "stream_url": gateway_stream_url(gw.deps, row.id) if State(row.state) in _LIVE_OR_LAUNCHING else None,
        "page_url": None
        if State(row.state) in ENDING
        else session_page_url(gw.settings, row.id, row.owner, row.expires_at),
        "code_received": row.verification_code is not None,
        "flow_run_id": row.flow_run_id,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "ready_at": _iso(row.ready_at),
        "expires_at": _iso(row.expires_at),
        "last_error": row.last_error,
    }


def codes_json(leases: list[LeaseRow]) -> list[dict[str, Any]]:
    """The codes received for a session's numbers, oldest first, with when they came."""
    got = sorted((x for x in leases if x.code), key=lambda x: (x.code_at is None, x.code_at, x.id))
    return [{"code": x.code, "at": _iso(x.code_at), "phone": e164(x.phone), "lease_id": x.id} for x in got]


def lease_json(row: LeaseRow) -> dict[str, Any]:
    """A number rented for a session: what we recorded the provider did, and whether a person
    must look (``needs_attention``, with why)."""
    return {
        "id": row.id,
        "provider": row.provider,
        "attempt": row.attempt,
        "outcome": row.outcome,
        "phone": e164(row.phone),
        "price": str(row.price) if row.price is not None else None,
        "currency": row.currency,
        "price_source": row.price_source,
        "cap": str(row.cap) if row.cap is not None else None,
        "overcharged": row.overcharged,
        "retries": row.retries,
        "needs_attention": row.outcome == LeaseOutcome.NEEDS_ATTENTION or row.attention is not None,
        "attention": row.attention,
    }


def cost_json(cost: dict) -> list[str]:
    """What a session's numbers cost, one amount per currency: charged and not refunded (a
    purchase not settled yet counts at its cap)."""
    return [f"{amount:.4f} {currency}" for currency, amount in sorted(cost.items())]


_LIVE_OR_LAUNCHING = frozenset({State.LAUNCHING, State.AWAITING_NUMBER, State.AWAITING_CODE, State.VERIFIED})


def _bad_id(request: Request, session_id: str) -> Response:
    return error_reply(request, 404, "unknown session", detail="not a session id", session_id=None)


async def list_sessions(request: Request) -> Response:
    """The caller's sessions; an operator's list holds everyone's (``?owner=`` filters it)."""
    gw = _gateway(request)
    caller = caller_of(request)
    try:
        limit = min(max(int(request.query_params.get("limit", "100")), 1), LIST_LIMIT_MAX)
        states = [State(s) for s in request.query_params.getlist("state")]
    except ValueError as exc:
        return error_reply(request, 400, "bad query", detail=str(exc))
    owner = request.query_params.get("owner") if caller.operator else caller.name

    def read() -> list[dict[str, Any]]:
        with gw.deps.sessions() as db:
            rows = repo.list_sessions(db, limit=limit, states=states, owner=owner)
            return [session_json(gw, row) for row in rows]

    return JSONResponse({"sessions": await run_in_threadpool(read)})


async def get_session(request: Request) -> Response:
    gw = _gateway(request)
    session_id = request.path_params["session_id"]
    if not valid_session_id(session_id):
        return _bad_id(request, session_id)

    def read() -> dict[str, Any] | None:
        with gw.deps.sessions() as db:
            row = repo.find_session(db, session_id)
            if row is None:
                return None
            body = session_json(gw, row)
            leases = lease_repo.leases_for_session(db, session_id)
            body["codes"] = codes_json(leases)
            body["code"] = body["codes"][-1]["code"] if body["codes"] else row.verification_code
            body["numbers"] = [lease_json(x) for x in leases]
            body["cost"] = cost_json(spendrepo.session_cost(db, session_id))
            body["events"] = [
                {
                    "at": _iso(e.at),
                    "from": e.from_state,
                    "to": e.to_state,
                    "reason": e.reason,
                    "actor": e.actor,
                }
                for e in repo.recent_events(db, session_id)
            ]
            return body

    body = await run_in_threadpool(read)
    if body is None:
        return error_reply(request, 404, "unknown session", session_id=session_id)
    return JSONResponse(body)


async def get_stream(request: Request) -> Response:
    """200 with the stream URL only when the session is live and its stream answers; never 502."""
    gw = _gateway(request)
    session_id = request.path_params["session_id"]
    if not valid_session_id(session_id):
        return _bad_id(request, session_id)
    try:
        await gw.upstream(session_id, probe=True)
    except UnknownSession:
        return error_reply(request, 404, "unknown session", session_id=session_id)
    except StreamUnavailable as exc:
        return error_reply(request, 503, exc.reason, detail=exc.detail, session_id=session_id)
    return JSONResponse({"session_id": session_id, "stream_url": gateway_stream_url(gw.deps, session_id)})


def _idempotency_key(request: Request, kind: str, caller: Caller) -> str | None:
    key = request.headers.get("idempotency-key")
    if not key:
        return None
    # Scoped to the purpose and the caller: one client's key never finds another's session or run.
    return f"gateway:{kind}:{caller.name}:{key}"


def _requested_by(request: Request) -> str:
    address = request.client.host if request.client else "unknown"
    return f"gateway:{caller_of(request).name}@{address}"[:128]


def _check_budget(gw: Gateway, provision: ProvisionRequest, owner: str) -> None:
    with gw.deps.sessions() as db:
        budgets.check(db, gw.settings, owner, price_cap(provision, gw.settings))


async def create_session(request: Request) -> Response:
    gw = _gateway(request)
    caller = caller_of(request)
    if len(request.headers.get("idempotency-key", "")) > IDEMPOTENCY_KEY_MAX:
        return error_reply(request, 400, "bad idempotency key", detail=f"at most {IDEMPOTENCY_KEY_MAX} chars")
    try:
        provision = ProvisionRequest.model_validate(parse_json_body(await request.body()))
    except BadBody as exc:
        return error_reply(request, exc.status, exc.reason, detail=exc.detail)
    except ValidationError as exc:
        return JSONResponse({"reason": "invalid request", "errors": validation_errors(exc)}, status_code=422)
    try:  # before any run starts, so nothing is bought for a request that cannot be served
        await run_in_threadpool(validate_request, provision, gw.settings)
    except InvalidRequest as exc:
        errors = [{"loc": [p.field], "msg": p.message, "type": "value_error"} for p in exc.problems]
        return JSONResponse({"reason": "invalid request", "errors": errors}, status_code=422)
    try:  # a budget that cannot cover one more number: nothing starts
        await run_in_threadpool(_check_budget, gw, provision, caller.name)
    except BudgetExhausted as exc:
        return JSONResponse(
            {"reason": BUDGET_EXHAUSTED, "detail": str(exc), **exc.state.as_json()}, status_code=402
        )
    try:
        accepted = await accept(
            gw.deps,
            gw.runs,
            provision,
            idempotency_key=_idempotency_key(request, "provision", caller),
            requested_by=_requested_by(request),
            owner=caller.name,
            limits=caller.client,
        )
    except LimitReached as exc:
        reply = error_reply(request, 429, "too many sessions", detail=str(exc))
        reply.headers["Retry-After"] = str(exc.retry_after_s)
        return reply
    except OrchestratorError as exc:
        return error_reply(request, exc.status, exc.reason, detail=str(exc))
    body = {
        "session_id": accepted.session_id,
        "flow_run_id": accepted.flow_run_id,
        "status_url": f"/sessions/{accepted.session_id}",
        "page_url": session_page_url(gw.settings, accepted.session_id, caller.name, accepted.expires_at),
    }
    if accepted.device_id:  # a warm device was claimed: its screen is usable now
        body["stream_url"] = gateway_stream_url(gw.deps, accepted.session_id)
    return JSONResponse(body, status_code=202)


async def delete_session(request: Request) -> Response:
    gw = _gateway(request)
    session_id = request.path_params["session_id"]
    if not valid_session_id(session_id):
        return _bad_id(request, session_id)
    try:
        ending = await end(
            gw.deps,
            gw.runs,
            session_id,
            actor=_requested_by(request),
            idempotency_key=_idempotency_key(request, f"release:{session_id}", caller_of(request))
            or f"release:{session_id}",
        )
    except repo.SessionNotFound:
        return error_reply(request, 404, "unknown session", session_id=session_id)
    except OrchestratorError as exc:
        return error_reply(request, 503, exc.reason, detail=str(exc), session_id=session_id)
    body = {"session_id": session_id, "state": ending.state, "flow_run_id": ending.flow_run_id}
    return JSONResponse(body, status_code=202 if ending.flow_run_id else 200)


async def wait_for_code(request: Request) -> Response:
    """Long poll: 200 with the codes as soon as one newer than ``after`` (ISO time; default: any)
    is recorded, 204 when ``wait`` seconds (at most CODE_WAIT_MAX_S) pass without one, 410 when
    the session ends meanwhile."""
    gw = _gateway(request)
    session_id = request.path_params["session_id"]
    try:
        wait_s = min(max(float(request.query_params.get("wait", "0")), 0.0), CODE_WAIT_MAX_S)
        after = request.query_params.get("after")
        after_at = datetime.fromisoformat(after.replace(" ", "+")) if after else None
        if after_at is not None and after_at.tzinfo is None:
            after_at = after_at.replace(tzinfo=UTC)
    except ValueError as exc:
        return error_reply(request, 400, "bad query", detail=f"wait is seconds, after an ISO time: {exc}")

    def read() -> tuple[str, list[dict[str, Any]], list[datetime]]:
        with gw.deps.sessions() as db:
            row = repo.get_session(db, session_id)
            leases = lease_repo.leases_for_session(db, session_id)
            return row.state, codes_json(leases), [x.code_at for x in leases if x.code and x.code_at]

    deadline = time.monotonic() + wait_s
    while True:
        try:
            state, codes, times = await run_in_threadpool(read)
        except repo.SessionNotFound:  # deleted while waiting
            return error_reply(request, 404, "unknown session", session_id=session_id)
        if codes and (after_at is None or any(at > after_at for at in times)):
            body = {
                "session_id": session_id,
                "code": codes[-1]["code"],
                "at": codes[-1]["at"],
                "codes": codes,
            }
            return JSONResponse(body)
        if State(state) in ENDING:
            return error_reply(request, 410, "ended", detail=f"the session is {state}", session_id=session_id)
        if time.monotonic() >= deadline:
            return Response(status_code=204)
        await asyncio.sleep(min(CODE_POLL_S, max(deadline - time.monotonic(), 0.0)))


routes = [
    Route("/sessions", list_sessions, methods=["GET"]),
    Route("/sessions", create_session, methods=["POST"]),
    Route("/sessions/{session_id}", owned(get_session), methods=["GET"]),
    Route("/sessions/{session_id}", owned(delete_session), methods=["DELETE"]),
    Route("/sessions/{session_id}/stream", owned(get_stream), methods=["GET"]),
    Route("/sessions/{session_id}/code", owned(wait_for_code), methods=["GET"]),
]
