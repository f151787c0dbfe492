import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from store.migrate import downgrade, upgrade
from store.models import Base
from tests.plugins.postgres import create_database, drop_database


def test_models_and_migrations_agree(database_url):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_then_downgrade_round_trips(postgres_server):
    name = f"provisioner_mig_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server, name)
    try:
        upgrade(url)
        engine = create_engine(url)
        assert {"sessions", "number_leases", "session_events"} <= set(inspect(engine).get_table_names())
        engine.dispose()
        downgrade(url)
        engine = create_engine(url)
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        engine.dispose()
        upgrade(url)
    finally:
        drop_database(postgres_server, name)
