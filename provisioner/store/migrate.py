"""Run the Alembic migrations from code (tests, the demo, the compose migration step)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session

from provisioner.settings import get_settings
from provisioner.store.db import make_engine
from provisioner.store.identity import record_identity

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["configure_logging"] = False
    if url:
        config.attributes["url"] = url
    return config


def upgrade(url: str | None = None, revision: str = "head", *, instance_id: str | None = None) -> str | None:
    """Migrate to `revision`; at head, record the deployment identity (store.identity) when the
    database has none yet, as `instance_id` or generated, and return it."""
    command.upgrade(alembic_config(url), revision)
    if revision != "head":
        return None
    engine = make_engine(url or get_settings().database.url, pool_size=1)
    try:
        with Session(engine) as session, session.begin():
            return record_identity(session, instance_id)
    finally:
        engine.dispose()


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


if __name__ == "__main__":
    print(f"database migrated to head; deployment {upgrade(instance_id=get_settings().instance_id)}")
