"""Clients of the gateway: who they are, what they may see, how much they may start.

A token is 32 random bytes (URL-safe text) shown once when the client is added; only its SHA-256
is stored, and a presented token is found by its hash and compared in constant time. Revoking
keeps the row (sessions still name their owner) and refuses the token at once: every request
reads the row.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from provisioner.store.models import CLIENT_NAME_PATTERN, PREFECT_OWNER, TOKEN_OPERATOR, ClientRow

TOKEN_PREFIX = "pvc_"
RESERVED_NAMES = frozenset({PREFECT_OWNER, TOKEN_OPERATOR})
_NAME = re.compile(CLIENT_NAME_PATTERN)


class Role(enum.StrEnum):
    CLIENT = "client"  # its own sessions only
    OPERATOR = "operator"  # every session


class ClientError(ValueError):
    """A client cannot be added or changed; the message says why."""


@dataclass(frozen=True)
class Client:
    """A caller as the gateway knows it (also the configured token's operator, never stored)."""

    name: str
    role: Role
    max_sessions: int | None = None
    rate_per_min: int | None = None

    @property
    def operator(self) -> bool:
        return self.role == Role.OPERATOR


def _client(row: ClientRow) -> Client:
    return Client(row.name, Role(row.role), row.max_sessions, row.rate_per_min)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_client(
    db: Session,
    name: str,
    *,
    role: Role = Role.CLIENT,
    max_sessions: int | None = None,
    rate_per_min: int | None = None,
) -> tuple[Client, str]:
    """Insert a client; returns it and its token (the only time the token exists in clear)."""
    if not _NAME.fullmatch(name):
        raise ClientError(f"{name!r} is not a client name: 1-32 lowercase letters, digits or '-'")
    if name in RESERVED_NAMES:
        raise ClientError(f"{name!r} is reserved (sessions started from Prefect or by the configured token)")
    if db.get(ClientRow, name) is not None:
        raise ClientError(f"client {name!r} exists already (revoked clients keep their name)")
    token = new_token()
    row = ClientRow(
        name=name,
        role=Role(role).value,
        token_hash=token_hash(token),
        max_sessions=max_sessions,
        rate_per_min=rate_per_min,
    )
    db.add(row)
    db.flush()
    return _client(row), token


def client_for_token(db: Session, token: str) -> Client | None:
    """The active client holding this token, or None."""
    digest = token_hash(token)
    row = db.scalar(select(ClientRow).where(ClientRow.token_hash == digest))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return _client(row)


def active_client(db: Session, name: str) -> Client | None:
    """The client of that name unless revoked (or missing)."""
    row = db.get(ClientRow, name)
    return None if row is None or row.revoked_at is not None else _client(row)


def list_clients(db: Session) -> list[ClientRow]:
    return list(db.scalars(select(ClientRow).order_by(ClientRow.name)))


def count_active_clients(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(ClientRow).where(ClientRow.revoked_at.is_(None))) or 0


def revoke_client(db: Session, name: str) -> bool:
    """Revoke the client; False when there is no such active client."""
    result = db.execute(
        update(ClientRow)
        .where(ClientRow.name == name, ClientRow.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return result.rowcount == 1
