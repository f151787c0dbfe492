"""Signed session links: ``<public url>/s/<id>?link=<expiry>.<signature>`` opens one session's
page and stream, for its owner, until the expiry (by default the session's own), while the
session has not ended and its owner is not revoked (the gateway checks those two).

The signature is an HMAC-SHA256 (key: ``gateway.link_secret``, else derived from the gateway
token) over the session id, its owner and the expiry, so a link altered in any part, or taken to
another session, does not verify. No token is in a link, and no link is ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import datetime

from provisioner.settings import Settings

LINK_PARAM = "link"
DEFAULT_LINK_TTL_S = 3600


class BadLink(ValueError):
    """A link that does not open its session; the message is safe to show."""


def link_key(settings: Settings) -> bytes | None:
    """The HMAC key of session links, or None when neither a link secret nor a token is set."""
    gateway = settings.gateway
    if gateway.link_secret is not None and gateway.link_secret.get_secret_value():
        return gateway.link_secret.get_secret_value().encode()
    if gateway.token is not None and gateway.token.get_secret_value():
        return hmac.new(
            gateway.token.get_secret_value().encode(), b"provisioner-session-links", "sha256"
        ).digest()
    return None


def _signature(key: bytes, session_id: str, owner: str, expires: int) -> str:
    mac = hmac.new(key, f"{session_id}\n{owner}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign(key: bytes, session_id: str, owner: str, expires: int) -> str:
    """The link value ``<expiry>.<signature>`` (expiry in Unix seconds)."""
    return f"{expires}.{_signature(key, session_id, owner, expires)}"


def verify(key: bytes, session_id: str, owner: str, value: str, *, now: float | None = None) -> int:
    """The link's expiry when ``value`` opens this session of this owner now; else BadLink."""
    expires_text, _, signature = value.partition(".")
    if not expires_text.isdigit() or not signature:
        raise BadLink("not a session link")
    expires = int(expires_text)
    expected = _signature(key, session_id, owner, expires)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise BadLink("not a link to this session")
    if expires <= (time.time() if now is None else now):
        raise BadLink("the link has expired")
    return expires


def session_page_path(session_id: str) -> str:
    return f"/s/{session_id}"


def session_page_url(
    settings: Settings, session_id: str, owner: str, expires_at: datetime | None = None
) -> str:
    """The session page's link for people (the Prefect artifact, the API): signed for the
    session and its owner until ``expires_at`` (the session's expiry; an hour when unknown).
    Without a link key (an open local gateway) the plain page URL."""
    url = settings.gateway.public_url.rstrip("/") + session_page_path(session_id)
    key = link_key(settings)
    if key is None:
        return url
    expires = int(expires_at.timestamp()) if expires_at is not None else int(time.time()) + DEFAULT_LINK_TTL_S
    return f"{url}?{LINK_PARAM}={sign(key, session_id, owner, expires)}"
