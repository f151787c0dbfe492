"""`provisioner clients`: add, list, revoke, as an operator types them (real database)."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from provisioner.cli.main import app
from provisioner.store import clients as clientrepo
from provisioner.store.models import ClientRow

runner = CliRunner()


def test_add_prints_the_token_once_and_stores_only_its_hash(db, db_sessions):
    added = runner.invoke(
        app, ["clients", "add", "alice", "--max-sessions", "2", "--rate", "10/min", "--json"]
    )
    assert added.exit_code == 0, added.output
    shown = json.loads(added.output)
    assert shown["name"] == "alice" and shown["token"].startswith("pvc_")
    with db_sessions() as s:
        row = s.scalar(select(ClientRow).where(ClientRow.name == "alice"))
        assert row.token_hash == clientrepo.token_hash(shown["token"])
        assert shown["token"] not in repr(row.__dict__)
        assert (row.role, row.max_sessions, row.rate_per_min) == ("client", 2, 10)
        assert clientrepo.client_for_token(s, shown["token"]).name == "alice"
        assert clientrepo.client_for_token(s, shown["token"] + "x") is None
    listed = runner.invoke(app, ["clients", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert row["name"] == "alice" and row["revoked_at"] is None
    assert shown["token"] not in listed.output


def test_operator_role_defaults_from_settings_and_revoke(db, db_sessions, monkeypatch):
    added = runner.invoke(app, ["clients", "add", "ops", "--role", "operator", "--json"])
    assert added.exit_code == 0, added.output
    token = json.loads(added.output)["token"]
    with db_sessions() as s:
        client = clientrepo.client_for_token(s, token)
        assert client.operator and client.max_sessions == 5 and client.rate_per_min == 30
    revoked = runner.invoke(app, ["clients", "revoke", "ops"])
    assert revoked.exit_code == 0, revoked.output
    with db_sessions() as s:
        assert clientrepo.client_for_token(s, token) is None
    again = runner.invoke(app, ["clients", "revoke", "ops"])
    assert again.exit_code == 2 and "no active client 'ops'" in again.output


def test_bad_names_roles_and_rates_get_a_clear_error(db):
    assert "is reserved" in runner.invoke(app, ["clients", "add", "prefect"]).output
    assert "not a client name" in runner.invoke(app, ["clients", "add", "Bad_Name"]).output
    assert "client or operator" in runner.invoke(app, ["clients", "add", "x", "--role", "root"]).output
    assert "write N/min" in runner.invoke(app, ["clients", "add", "x", "--rate", "fast"]).output
    assert runner.invoke(app, ["clients", "add", "x"]).exit_code == 0
    dup = runner.invoke(app, ["clients", "add", "x"])
    assert dup.exit_code == 2 and "exists already" in dup.output
