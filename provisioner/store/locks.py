"""PostgreSQL advisory locks: one holder of a named pass at a time across processes."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker


@contextlib.contextmanager
def advisory_lock(sessions: sessionmaker[Session], name: str) -> Iterator[bool]:
    """A session-level advisory lock held for the block; yields False if another holds it."""
    key = zlib.crc32(name.encode())
    with sessions() as db:
        got = bool(db.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
        try:
            yield got
        finally:
            if got:
                db.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            db.commit()
