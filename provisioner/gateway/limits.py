"""Input limits: request body size (ASGI middleware) and strict JSON parsing of request bodies.

bodies over MAX_BODY_BYTES              -> 413
invalid UTF-8                           -> 400
not JSON, NaN/Infinity, nested too deep -> 422
a body that fails the model             -> 422 naming the fields, never echoing the input
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 8
_FIELD_NAME_MAX = 64


class BadBody(Exception):
    """The body cannot be used; ``status`` is the HTTP code, the message is safe to show."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


class BodyTooLarge(Exception):
    pass


def _reply_413() -> JSONResponse:
    return JSONResponse(
        {"reason": "body too large", "detail": f"request bodies are limited to {MAX_BODY_BYTES} bytes"},
        status_code=413,
    )


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, by Content-Length or while reading."""

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _reply_413()(scope, receive, send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reply_413()(scope, receive, send)


def _depth(text: str) -> int:
    """Deepest nesting of arrays/objects, ignoring brackets inside strings (before json.loads, so a
    deeply nested body never reaches the recursive parser)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_constants(name: str) -> Any:
    raise BadBody(422, "invalid JSON", f"{name} is not a valid JSON number")


def parse_json_body(raw: bytes) -> Any:
    """The body as JSON ({} when empty), or BadBody."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody(400, "invalid body", "the body is not valid UTF-8") from None
    if not text.strip():
        return {}
    if _depth(text) > MAX_DEPTH:
        raise BadBody(422, "invalid JSON", f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise BadBody(422, "invalid JSON", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise BadBody(422, "invalid JSON", "nested too deeply") from None


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as field, message and type: never the input (it may be huge or a secret)."""
    errors = []
    for error in exc.errors(include_url=False, include_context=False):
        loc = [part if isinstance(part, int) else str(part)[:_FIELD_NAME_MAX] for part in error["loc"]]
        errors.append(
            {"loc": loc, "msg": _without_input(error["msg"], error.get("input")), "type": error["type"]}
        )
    return errors


def _without_input(message: str, value: Any) -> str:
    """A validator's message may quote the value it refused: cut it out."""
    if isinstance(value, str) and value and value in message:
        # "unknown country 'XX' (an ISO ...)" reads "unknown country (an ISO ...)": the quote goes.
        message = message.replace(f" {value!r}", "").replace(repr(value), "the given value")
        message = message.replace(value, "the given value")
    return message[:300]
