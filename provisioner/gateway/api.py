"""The JSON API: list and read sessions, ask for a stream, start provision and release flow runs."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provisioner.gateway.accept import accept, end
from provisioner.gateway.limits import BadBody, parse_json_body, validation_errors
from provisioner.gateway.pages import error_reply
from provisioner.gateway.runs import IDEMPOTENCY_KEY_MAX, OrchestratorError
from provisioner.gateway.service import Gateway, UnknownSession
from provisioner.gateway.upstream import StreamUnavailable, valid_session_id
from provisioner.steps.checks import InvalidRequest, validate_request
from provisioner.steps.request import ProvisionRequest
from provisioner.steps.streams import gateway_stream_url
from provisioner.store import LeaseOutcome, LeaseRow, SessionRow, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.store.models import TOKEN_OPERATOR
from tasks.publish import mask_phone

LIST_LIMIT_MAX = 500


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def session_json(gw: Gateway, row: SessionRow) -> dict[str, Any]:
    """A session as clients see it: the phone masked, the code never."""
    return {
        "id": row.id,
        "state": row.state,
        "phone": mask_phone(row.phone_number),
        "provider": row.provider,
        "service": row.service,
        "country": row.country,
        "device_profile": row.device_profile,
        "device_id": row.device_id,
        "stream_url": gateway_stream_url(gw.deps, row.id) if State(row.state) in _LIVE_OR_LAUNCHING else None,
        "code_received": row.verification_code is not None,
        "flow_run_id": row.flow_run_id,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "ready_at": _iso(row.ready_at),
        "expires_at": _iso(row.expires_at),
        "last_error": row.last_error,
    }


def lease_json(row: LeaseRow) -> dict[str, Any]:
    """A number rented for a session: what we recorded the provider did, and whether a person
    must look (``needs_attention``, with why)."""
    return {
        "id": row.id,
        "provider": row.provider,
        "attempt": row.attempt,
        "outcome": row.outcome,
        "phone": mask_phone(row.phone),
        "price": str(row.price) if row.price is not None else None,
        "currency": row.currency,
        "retries": row.retries,
        "needs_attention": row.outcome == LeaseOutcome.NEEDS_ATTENTION or row.attention is not None,
        "attention": row.attention,
    }


_LIVE_OR_LAUNCHING = frozenset({State.LAUNCHING, State.AWAITING_NUMBER, State.AWAITING_CODE, State.VERIFIED})


def _bad_id(request: Request, session_id: str) -> Response:
    return error_reply(request, 404, "unknown session", detail="not a session id", session_id=None)


async def list_sessions(request: Request) -> Response:
    gw = _gateway(request)
    try:
        limit = min(max(int(request.query_params.get("limit", "100")), 1), LIST_LIMIT_MAX)
        states = [State(s) for s in request.query_params.getlist("state")]
    except ValueError as exc:
        return error_reply(request, 400, "bad query", detail=str(exc))

    def read() -> list[dict[str, Any]]:
        with gw.deps.sessions() as db:
            return [session_json(gw, row) for row in repo.list_sessions(db, limit=limit, states=states)]

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
            body["numbers"] = [lease_json(x) for x in lease_repo.leases_for_session(db, session_id)]
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


def _idempotency_key(request: Request, kind: str) -> str | None:
    key = request.headers.get("idempotency-key")
    if not key:
        return None
    # Scoped, so a client key can never match a run created for another purpose.
    return f"gateway:{kind}:{key}"


def _requested_by(request: Request) -> str:
    client = request.client.host if request.client else "unknown"
    return f"gateway:{client}"[:128]


async def create_session(request: Request) -> Response:
    gw = _gateway(request)
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
    try:
        accepted = await accept(
            gw.deps,
            gw.runs,
            provision,
            idempotency_key=_idempotency_key(request, "provision"),
            requested_by=_requested_by(request),
            owner=TOKEN_OPERATOR,
        )
    except OrchestratorError as exc:
        return error_reply(request, 503, exc.reason, detail=str(exc))
    body = {
        "session_id": accepted.session_id,
        "flow_run_id": accepted.flow_run_id,
        "status_url": f"/sessions/{accepted.session_id}",
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
            idempotency_key=_idempotency_key(request, f"release:{session_id}") or f"release:{session_id}",
        )
    except repo.SessionNotFound:
        return error_reply(request, 404, "unknown session", session_id=session_id)
    except OrchestratorError as exc:
        return error_reply(request, 503, exc.reason, detail=str(exc), session_id=session_id)
    body = {"session_id": session_id, "state": ending.state, "flow_run_id": ending.flow_run_id}
    return JSONResponse(body, status_code=202 if ending.flow_run_id else 200)


routes = [
    Route("/sessions", list_sessions, methods=["GET"]),
    Route("/sessions", create_session, methods=["POST"]),
    Route("/sessions/{session_id}", get_session, methods=["GET"]),
    Route("/sessions/{session_id}", delete_session, methods=["DELETE"]),
    Route("/sessions/{session_id}/stream", get_stream, methods=["GET"]),
]
