"""One engine and sessionmaker per process, built from settings."""

from __future__ import annotations

import functools

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from provisioner.settings import get_settings

# Bounded waits: while the database is down a caller learns it in seconds (the gateway answers 503).
CONNECT_TIMEOUT_S = 5
POOL_TIMEOUT_S = 10


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    return create_engine(
        url,
        pool_size=pool_size,
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        future=True,
    )


@functools.cache
def get_engine() -> Engine:
    settings = get_settings()
    return make_engine(settings.database.url, pool_size=settings.database.pool_size)


@functools.cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


def reset_engine() -> None:
    """Forget the cached engine (tests, and after a fork)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
