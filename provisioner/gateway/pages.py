"""Error replies: JSON for programs, a small HTML page for browsers (Accept: text/html)."""

from __future__ import annotations

import html

from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, Response

# Reasons worth retrying soon: the session is coming up or its stream may come back.
_TRANSIENT = frozenset(
    {
        "provisioning",
        "stream down",
        "orchestrator unavailable",
        "database unavailable",
        "internal error",
        "not ready",
    }
)
RETRY_AFTER_S = 5

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}<title>{title}</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:4em auto;color:#222}}
code{{background:#eee;padding:0 .3em}}</style></head>
<body><h1>{title}</h1><p>{message}</p>{detail}</body></html>
"""

_MESSAGES = {
    "provisioning": "This session is still being provisioned; its stream is not up yet. This page reloads itself.",
    "stream down": "This session's stream is not answering right now. This page reloads itself.",
    "released": "This session has been released; its device is gone.",
    "releasing": "This session is being released.",
    "expired": "This session has expired; its device is gone.",
    "failed": "This session failed; it has no device.",
    "cancelled": "This session was cancelled.",
    "orphaned": "This session lost its device.",
    "ended": "This session has ended; its device is gone and will not come back. Start a new session.",
    "database unavailable": "The session store is not answering right now. Reload in a few seconds.",
    "orchestrator unavailable": "The Prefect API is not answering right now. Try again in a few seconds.",
    "internal error": "Something went wrong on our side. Reload in a few seconds.",
    "unauthorized": "This page opens with its session's signed link (the link in the session's Prefect "
    "artifact, printed by `provisioner provision`, or the API's page_url), or with an API token.",
}


def wants_html(conn: HTTPConnection) -> bool:
    return "text/html" in conn.headers.get("accept", "")


def error_reply(
    conn: HTTPConnection, status_code: int, reason: str, *, detail: str = "", session_id: str | None = None
) -> Response:
    """A clear error; 503 replies carry Retry-After when the condition is likely to pass."""
    transient = status_code == 503 and reason in _TRANSIENT
    headers = {"Retry-After": str(RETRY_AFTER_S)} if transient else {}
    if wants_html(conn):
        title = f"Session {session_id}: {reason}" if session_id else reason.capitalize()
        body = _PAGE.format(
            # The page reloads itself while the condition is likely to pass (a stream being healed).
            refresh=f'<meta http-equiv="refresh" content="{RETRY_AFTER_S}">' if transient else "",
            title=html.escape(title),
            message=html.escape(_MESSAGES.get(reason, reason)),
            detail=f"<p><code>{html.escape(detail)}</code></p>" if detail else "",
        )
        return HTMLResponse(body, status_code=status_code, headers=headers)
    payload: dict[str, str] = {"reason": reason}
    if detail:
        payload["detail"] = detail
    if session_id:
        payload["session_id"] = session_id
    return JSONResponse(payload, status_code=status_code, headers=headers)
