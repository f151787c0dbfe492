"""A free port, a throwaway PostgreSQL and the provider simulator, for tests and benches."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from provisioner.cli.local_postgres import free_port, throwaway
from provisioner.simulator.server import Simulator

__all__ = ["TEST_PROFILES_FILE", "free_port", "postgres", "simulator"]

# Profiles only tests use: a device that exits at once, a fake android boot, a missing image.
TEST_PROFILES_FILE = Path(__file__).resolve().parents[1] / "runtime" / "fake_profiles.yaml"


@contextlib.contextmanager
def postgres(database: str = "bench", *, migrate: bool = True) -> Iterator[str]:
    """A throwaway cluster from the installed server binaries with one database (migrated with
    the real migrations unless ``migrate=False``); yields its URL; the cluster's directory is
    removed at the end."""
    from provisioner.store.migrate import upgrade

    cluster = throwaway()
    cluster.start()
    try:
        url = cluster.create_database(database)
        if migrate:
            upgrade(url)
        yield url
    finally:
        cluster.stop()
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)


@contextlib.contextmanager
def simulator(keys: dict[str, str]) -> Iterator[Simulator]:
    """The provider simulator on a free loopback port, codes only when a caller delivers them
    (``keys``: API key -> balance)."""
    sim = Simulator(host="127.0.0.1", port=0, keys=keys, sms_delay_s=None)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()
