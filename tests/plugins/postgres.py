"""PostgreSQL for the test session: PROVISIONER_TEST_DATABASE_URL when set, otherwise a throwaway
cluster started once from the installed server binaries and stopped at the end.

The test database is migrated once with the real Alembic migrations; the ``db`` fixture empties
every table after each test, so each test starts clean and leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.orm import Session, sessionmaker

from provisioner.cli.local_postgres import LocalPostgres, throwaway


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a server database we may create databases from (maintenance db)."""
    external = os.environ.get("PROVISIONER_TEST_DATABASE_URL")
    if external:
        yield external
        return
    cluster: LocalPostgres = throwaway()
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    with psycopg.connect(_plain_dsn(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(_plain_dsn(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def adopt_identity(url: str, instance_id: str) -> None:
    """Make `instance_id` the deployment identity of the database at `url`: each test runs as a
    deployment of its own (its runtime's instance id) on the session's one database."""
    with psycopg.connect(_plain_dsn(url), autocommit=True) as conn:
        conn.execute("UPDATE deployment SET instance_id = %s WHERE id = 1", (instance_id,))


@pytest.fixture(scope="session")
def database_url(postgres_server: str) -> Iterator[str]:
    """A migrated database for this test session; settings point at it."""
    from provisioner.settings import get_settings
    from provisioner.store import reset_engine
    from provisioner.store.migrate import upgrade

    name = f"provisioner_test_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server, name)
    upgrade(url)
    previous = os.environ.get("PROVISIONER_DATABASE__URL")
    os.environ["PROVISIONER_DATABASE__URL"] = url
    get_settings.cache_clear()
    reset_engine()
    try:
        yield url
    finally:
        reset_engine()
        if previous is None:
            os.environ.pop("PROVISIONER_DATABASE__URL", None)
        else:
            os.environ["PROVISIONER_DATABASE__URL"] = previous
        get_settings.cache_clear()
        drop_database(postgres_server, name)


@pytest.fixture
def db_sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """The process-wide sessionmaker on the clean test database; tables emptied afterwards."""
    from provisioner.store import get_engine, get_sessionmaker

    yield get_sessionmaker()
    with get_engine().begin() as conn:
        conn.execute(
            text(
                "TRUNCATE session_events, number_leases, sessions, code_watchers, provider_catalogs, hosts, devices, "
                "reconcile_action_counts, clients, budgets, provider_accounts RESTART IDENTITY CASCADE"
            )
        )


@pytest.fixture
def db(db_sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session for a test; the test commits with ``db.commit()`` when it needs to."""
    with db_sessions() as session:
        yield session
