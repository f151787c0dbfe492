"""The provisioner command, run as a user would (Typer's runner, real database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from cli.main import app
from store import repository as repo

runner = CliRunner()


@pytest.fixture
def no_providers(monkeypatch, database_url):
    import os

    from settings import get_settings

    for key in list(os.environ):
        if key.startswith("PROVISIONER_PROVIDERS__"):
            monkeypatch.delenv(key)
    monkeypatch.chdir("/")  # no .env from the checkout
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_provision_without_a_provider_says_how_to_configure_one(no_providers):
    result = runner.invoke(app, ["provision"])
    assert result.exit_code == 2
    assert "no SMS provider is configured" in result.output
    assert "PROVISIONER_PROVIDERS__" in result.output


def test_missing_database_setting_is_named(monkeypatch):
    from settings import get_settings

    monkeypatch.delenv("PROVISIONER_DATABASE__URL", raising=False)
    monkeypatch.chdir("/")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["sessions"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "PROVISIONER_DATABASE__URL is not set" in result.output


def test_release_rejects_a_malformed_id(database_url):
    result = runner.invoke(app, ["release", "../etc"])
    assert result.exit_code == 2
    assert "is not a session id" in result.output


def test_sessions_lists_rows(db, no_providers):
    row = repo.create_session(db, service="tg", country="7", actor="test", ttl=timedelta(minutes=1))
    db.commit()
    result = runner.invoke(app, ["sessions"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert row.id in result.output and "requested" in result.output and "tg/7" in result.output


def test_bad_provision_options_are_reported(no_providers, monkeypatch):
    from settings import get_settings

    monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_MAN__API_KEY", "k")
    get_settings.cache_clear()
    result = runner.invoke(app, ["provision", "--attempts", "0", "--service", "bad service!"])
    assert result.exit_code == 2
    assert "invalid options" in result.output and "number_attempts" in result.output
