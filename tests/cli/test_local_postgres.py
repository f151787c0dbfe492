"""The demo's and the tests' PostgreSQL cluster from a checkout only root can enter."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from provisioner.cli.local_postgres import LocalPostgres, data_dir_for, reachable_by_server_user, throwaway

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the postgres-user case only exists as root")


@pytest.fixture
def root_only_checkout():
    base = Path(tempfile.mkdtemp(prefix="provisioner-rootonly-"))
    os.chmod(base, 0o700)
    try:
        yield base / "repo"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_cluster_for_a_root_only_checkout_lives_where_postgres_can_reach_and_starts(root_only_checkout):
    state_dir = root_only_checkout / ".local"
    data_dir, why = data_dir_for(state_dir)
    assert not reachable_by_server_user(state_dir)
    assert not data_dir.is_relative_to(root_only_checkout)
    assert why is not None
    assert str(state_dir) in why
    assert str(data_dir.parent) in why
    assert data_dir_for(state_dir) == (data_dir, why), "the same checkout reuses its cluster"
    cluster = LocalPostgres(data_dir=data_dir)
    try:
        cluster.start()
        with psycopg.connect(f"host=127.0.0.1 port={cluster.port} user=provisioner dbname=postgres") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cluster.stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def test_a_running_cluster_is_found_on_its_own_port_whatever_port_was_remembered(root_only_checkout):
    """A checkout cloned again at the same path finds the cluster kept outside it still running:
    the demo must connect to the port it listens on, not to a port it picks anew."""
    data_dir, _ = data_dir_for(root_only_checkout / ".local")
    cluster = LocalPostgres(data_dir=data_dir)
    try:
        cluster.start()
        again = LocalPostgres(data_dir=data_dir)  # a fresh free port, as a new checkout picks
        assert again.port != cluster.port
        assert again.running()
        assert again.running_port() == cluster.port
    finally:
        cluster.stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    assert LocalPostgres(data_dir=data_dir).running_port() is None


def test_reachable_checkout_keeps_its_cluster_inside():
    checkout = Path(tempfile.mkdtemp(prefix="provisioner-reachable-", dir="/var/tmp"))
    try:
        os.chmod(checkout, 0o755)
        assert data_dir_for(checkout / ".local") == (checkout / ".local" / "postgres", None)
    finally:
        shutil.rmtree(checkout, ignore_errors=True)


def test_throwaway_cluster_is_reachable_even_with_a_root_only_tmpdir(monkeypatch, root_only_checkout):
    root_only_checkout.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root_only_checkout))
    cluster = throwaway()
    try:
        assert reachable_by_server_user(cluster.data_dir.parent)
        assert not cluster.data_dir.is_relative_to(root_only_checkout)
    finally:
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)
