"""Provider webhooks: `POST /webhooks/{provider}/{secret}` writes the code into its lease.

The secret (PROVISIONER_CODES__WEBHOOK_SECRET) is the credential: providers cannot send our bearer
token, so this route is outside the gateway's token check and compares the secret in constant
time (wrong: 401, nothing read or written). Bodies are bounded and validated:

    sms_activate  {"activationId", "service", "text", "code", "country", "receivedAt"}
                  (code and text may be null: the code is then read from the text)
    onlinesim     {"number", "sender", "message", "operation_id", "time_left", "webhook_type"}

A duplicate (providers retry), or a webhook for an activation we do not hold, is answered 200 and
ignored, so the provider stops retrying. The write is `provisioner.steps.codes.record_code_for`, the one
the watcher and the flows' own polling use; the watcher's polling covers a webhook that never came.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provisioner.gateway.pages import error_reply
from provisioner.steps.codes import record_code_for

ACTOR = "webhook"
WEBHOOK_PREFIX = "/webhooks/"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CODE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_CODE_IN_TEXT = re.compile(r"(?<!\d)(\d{4,8}|\d{3}[- ]\d{3})(?!\d)")


class InvalidWebhook(ValueError):
    """The body is not a webhook of that provider; the message says why (never echoes the body)."""


@dataclass(frozen=True)
class IncomingSms:
    activation_id: str
    code: str | None  # None: the message carries no code (nothing to record)


def code_in(text: object) -> str | None:
    """The verification code in an SMS text: the first run of 4-8 digits, or 3+3 split by a dash or space."""
    if not isinstance(text, str):
        return None
    match = _CODE_IN_TEXT.search(text)
    return re.sub(r"[- ]", "", match.group(1)) if match else None


def _activation_id(value: object, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidWebhook(f"{field} must be a string or an integer")
    activation_id = str(value).strip()
    if not _ID.match(activation_id):
        raise InvalidWebhook(f"{field} must be 1-64 letters, digits, '-' or '_'")
    return activation_id


def _explicit_code(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidWebhook("code must be a string, an integer or null")
    code = str(value).strip()
    if not _CODE.match(code):
        raise InvalidWebhook("code must be 1-64 letters, digits or '-'")
    return code


def _optional_text(body: dict, field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidWebhook(f"{field} must be a string or null")
    return value


def parse_sms_activate(body: dict) -> IncomingSms:
    if "activationId" not in body:
        raise InvalidWebhook("activationId is missing")
    activation_id = _activation_id(body["activationId"], "activationId")
    text = _optional_text(body, "text")
    return IncomingSms(activation_id, _explicit_code(body.get("code")) or code_in(text))


def parse_onlinesim(body: dict) -> IncomingSms:
    if "operation_id" not in body:
        raise InvalidWebhook("operation_id is missing")
    kind = body.get("webhook_type", "newSms")
    activation_id = _activation_id(body["operation_id"], "operation_id")
    message = _optional_text(body, "message")
    if kind != "newSms":
        return IncomingSms(activation_id, None)
    return IncomingSms(activation_id, code_in(message))


PARSERS = {"sms_activate": parse_sms_activate, "onlinesim": parse_onlinesim}


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_webhook(request: Request) -> Response:
    deps = request.app.state.gateway.deps
    settings = deps.settings.codes
    provider, secret = request.path_params["provider"], request.path_params["secret"]
    parse = PARSERS.get(provider)
    if parse is None:
        return error_reply(request, 404, "no webhooks", detail=f"expected one of {', '.join(PARSERS)}")
    expected = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not expected:
        return error_reply(request, 404, "no webhooks", detail="PROVISIONER_CODES__WEBHOOK_SECRET is not set")
    if not hmac.compare_digest(secret.encode(), expected.encode()):
        return error_reply(request, 401, "unauthorized", detail="wrong webhook secret")
    raw = await _bounded_body(request, settings.webhook_max_bytes)
    if raw is None:
        return error_reply(
            request, 413, "body too large", detail=f"at most {settings.webhook_max_bytes} bytes"
        )
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise InvalidWebhook("the body must be a JSON object")
        sms = parse(body)
    except (ValueError, InvalidWebhook) as exc:  # json.JSONDecodeError is a ValueError
        detail = str(exc) if isinstance(exc, InvalidWebhook) else "the body is not JSON"
        return error_reply(request, 400, "invalid webhook", detail=detail)
    if sms.code is None:
        return JSONResponse({"ok": True, "ignored": "no code in the message"})
    outcome = await run_in_threadpool(
        record_code_for, deps, provider, sms.activation_id, sms.code, via="webhook", actor=ACTOR
    )
    if outcome == "recorded":
        return JSONResponse({"ok": True, "recorded": True})
    return JSONResponse({"ok": True, "ignored": outcome})


routes = [Route("/webhooks/{provider}/{secret}", receive_webhook, methods=["POST"])]
