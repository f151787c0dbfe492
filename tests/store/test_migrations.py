import uuid
from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from provisioner.store.migrate import downgrade, upgrade
from provisioner.store.models import Base
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


def test_0011_carries_the_down_records_over_and_back(postgres_server):
    """sessions.device_down_since and devices.health become devices.down_since/down_condition."""
    name = f"provisioner_mig_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server, name)
    engine = create_engine(url)
    try:
        upgrade(url, "0010_reconcile_action_counts")
        device = "INSERT INTO devices (id, profile, host, state, device_container, stream_container, {0}) "
        with engine.begin() as conn:
            conn.execute(
                text(
                    device.format("health, health_since") + "VALUES ('d1', 'stub', 'local', "
                    "'idle', 'c1', 's1', 'unhealthy', '2025-01-01T12:00:00Z')"
                )
            )
            conn.execute(
                text(
                    device.format("health") + "VALUES ('d2', 'stub', 'local', 'claimed', "
                    "'c2', 's2', 'healthy')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO sessions (id, state, service, country, device_id, device_down_since) "
                    "VALUES ('s2', 'verified', 'tg', '0', 'd2', '2025-01-01T12:00:05Z')"
                )
            )
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, down_condition, down_since FROM devices ORDER BY id")).all()
        noon = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
        assert [tuple(r) for r in rows] == [
            ("d1", "unhealthy", noon),
            ("d2", "unknown", noon + timedelta(seconds=5)),
        ]
        downgrade(url, "0010_reconcile_action_counts")
        with engine.connect() as conn:
            health = conn.execute(text("SELECT id, health FROM devices ORDER BY id")).all()
            down = conn.execute(text("SELECT device_down_since FROM sessions WHERE id = 's2'")).scalar_one()
        assert [tuple(r) for r in health] == [("d1", "unhealthy"), ("d2", None)]
        assert down == noon + timedelta(seconds=5)
    finally:
        engine.dispose()
        drop_database(postgres_server, name)


def test_0012_owns_gateway_sessions_by_the_operator_and_the_rest_by_prefect(postgres_server):
    name = f"provisioner_mig_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server, name)
    engine = create_engine(url)
    try:
        upgrade(url, "0011_device_down")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO sessions (id, state, service, country, requested_by) VALUES "
                    "('aaaaaaaaaaaa', 'requested', 'tg', 'RU', 'gateway:10.0.0.1'), "
                    "('bbbbbbbbbbbb', 'requested', 'tg', 'RU', NULL)"
                )
            )
        upgrade(url, "0012_clients")
        with engine.connect() as conn:
            owners = dict(conn.execute(text("SELECT id, owner FROM sessions")).all())
        assert owners == {"aaaaaaaaaaaa": "operator", "bbbbbbbbbbbb": "prefect"}
        downgrade(url, "0011_device_down")
        assert "clients" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
        drop_database(postgres_server, name)
