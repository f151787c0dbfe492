"""`POST /sessions/{id}/code`: ask the provider for the next SMS on a live session's number.

202 when asked (the watcher, a webhook or the flow records the new code; `GET /sessions/{id}`
shows it arrived), 404 unknown session, 409 when this session cannot get another code now, 503
when the provider failed transiently. Never 500 or 502.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from providers.errors import ProviderError, TransientError
from provisioner.gateway.auth import caller_of
from provisioner.gateway.owners import owned
from provisioner.gateway.pages import error_reply
from provisioner.gateway.upstream import valid_session_id
from provisioner.steps.codes import AnotherCodeRefused, request_another_code
from provisioner.store.repository import SessionNotFound


async def ask_for_another_code(request: Request) -> Response:
    deps = request.app.state.gateway.deps
    session_id = request.path_params["session_id"]
    if not valid_session_id(session_id):
        return error_reply(request, 404, "unknown session", detail="not a session id")
    try:
        lease_id = await run_in_threadpool(
            request_another_code, deps, session_id, actor=f"gateway:{caller_of(request).name}"
        )
    except SessionNotFound:
        return error_reply(request, 404, "unknown session", session_id=session_id)
    except AnotherCodeRefused as exc:
        return error_reply(request, 409, "no other code", detail=str(exc), session_id=session_id)
    except TransientError as exc:
        return error_reply(request, 503, "provider unavailable", detail=str(exc), session_id=session_id)
    except ProviderError as exc:
        return error_reply(request, 409, "provider refused", detail=str(exc), session_id=session_id)
    return JSONResponse(
        {"session_id": session_id, "lease_id": lease_id, "status": "waiting for another code"},
        status_code=202,
    )


routes = [Route("/sessions/{session_id}/code", owned(ask_for_another_code), methods=["POST"])]
