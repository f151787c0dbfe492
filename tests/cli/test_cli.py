"""The provisioner command, run as a user would (Typer's runner, real database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioner.cli.main import app
from provisioner.store import State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo

runner = CliRunner()


@pytest.fixture
def no_providers(monkeypatch, database_url):
    import os

    from provisioner.settings import get_settings

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
    from provisioner.settings import get_settings

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
    row = repo.create_session(db, service="telegram", country="RU", actor="test", ttl=timedelta(minutes=1))
    db.commit()
    result = runner.invoke(app, ["sessions"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert row.id in result.output and "requested" in result.output and "telegram/RU" in result.output


def test_bad_provision_options_are_reported(no_providers, monkeypatch):
    from provisioner.settings import get_settings

    monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_MAN__API_KEY", "k")
    get_settings.cache_clear()
    result = runner.invoke(app, ["provision", "--attempts", "0", "--service", "bad service!"])
    assert result.exit_code == 2
    assert "invalid options" in result.output and "number_attempts" in result.output


def test_version_is_the_project_version():
    from provisioner.settings.version import VERSION

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"provisioner {VERSION}"
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    assert VERSION == tomllib.loads(pyproject.read_text())["project"]["version"]


def test_sessions_never_cut_ids_on_a_narrow_pipe_and_json_lists_them(db, no_providers):
    rows = [
        repo.create_session(db, service="telegram", country="RU", actor="test", ttl=timedelta(minutes=1))
        for _ in range(2)
    ]
    published = "http://127.0.0.1:32833/vnc.html?autoconnect=1&path=websockify"  # a stream's own port
    repo.update_session(db, rows[0].id, stream_url=published)
    repo.transition(db, rows[0].id, State.AWAITING_NUMBER, reason="test", actor="test")
    db.commit()
    narrow = runner.invoke(app, ["sessions"], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    for row in rows:
        assert row.id in narrow.output
    assert "…" not in narrow.output

    as_json = runner.invoke(app, ["sessions", "--json"], env={"COLUMNS": "80"})
    assert as_json.exit_code == 0, as_json.output
    listed = {r["id"]: r for r in json.loads(as_json.output)}
    assert set(listed) == {r.id for r in rows}
    # Through the gateway, never the published port; none for a session not live.
    assert f"/s/{rows[0].id}" in listed[rows[0].id]["page_url"]
    assert "32833" not in as_json.output and "32833" not in narrow.output
    assert listed[rows[1].id]["page_url"] is None
    assert listed[rows[1].id]["state"] == "requested"


def test_leases_attention_lists_only_leases_a_person_must_look_at(db, no_providers):
    from provisioner.store import LeaseOutcome

    s = repo.create_session(db, service="telegram", country="RU", actor="test", ttl=timedelta(minutes=1))
    calm = lease_repo.record_lease_pending(db, s.id, provider="sms_man", service="3", country="1", attempt=1)
    lost = lease_repo.record_lease_pending(
        db, s.id, provider="sms_activate", service="tg", country="0", attempt=2
    )
    db.flush()
    lost.outcome = LeaseOutcome.NEEDS_ATTENTION.value
    db.commit()

    nothing = runner.invoke(app, ["leases", "--attention", "--json"])
    assert nothing.exit_code == 0, nothing.output
    assert [(r["id"], r["outcome"]) for r in json.loads(nothing.output)] == [(lost.id, "needs_attention")]

    everything = runner.invoke(app, ["leases", "--json"])
    assert [r["id"] for r in json.loads(everything.output)] == [lost.id, calm.id]

    table = runner.invoke(app, ["leases", "--attention"], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert s.id in table.output
    assert "needs_attention" in table.output


def test_leases_attention_says_when_nothing_needs_a_person(db, no_providers):
    result = runner.invoke(app, ["leases", "--attention"])
    assert result.exit_code == 0, result.output
    assert "no lease needs attention" in result.output


@pytest.mark.docker
def test_reconcile_dry_run_lists_then_reconcile_removes_a_leaked_container(provisioner_env, runtime):
    import time

    from provisioner.store import new_session_id

    stray = new_session_id()
    runtime.launch_device(stray, "stub")
    name = runtime.name_for(stray, "device")
    time.sleep(provisioner_env.settings.reconcile.grace_s + 1.1)  # created-at has whole seconds

    dry = runner.invoke(app, ["reconcile", "--dry-run"], env={"COLUMNS": "200"})
    assert dry.exit_code == 0, dry.output
    assert "remove_container" in dry.output
    assert name in dry.output
    assert "1 action(s) planned, 0 failed" in dry.output
    assert [c.device_id for c in runtime.list_managed()] == [stray]

    done = runner.invoke(app, ["reconcile"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "removed" in done.output
    assert runtime.list_managed() == []

    again = runner.invoke(app, ["reconcile"])
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.output


def test_provision_with_an_unknown_service_lists_close_matches_and_buys_nothing(
    db, no_providers, monkeypatch
):
    from provisioner.settings import get_settings

    monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_MAN__API_KEY", "k")
    get_settings.cache_clear()
    result = runner.invoke(app, ["provision", "--service", "telgram"], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "unknown service 'telgram'; did you mean telegram" in result.output
    assert repo.list_sessions(db) == []


@pytest.fixture
def sim_providers(sim, db, monkeypatch):
    """All three providers configured against the simulator, for this test's settings."""
    from provisioner.settings import get_settings
    from provisioner.steps.deps import reset_deps
    from tests.plugins.simulator import SIM_KEY

    for name, url in sim.base_urls.items():
        monkeypatch.setenv(f"PROVISIONER_PROVIDERS__{name.upper()}__API_KEY", SIM_KEY)
        monkeypatch.setenv(f"PROVISIONER_PROVIDERS__{name.upper()}__BASE_URL", url)
    get_settings.cache_clear()
    reset_deps()
    yield
    reset_deps()
    monkeypatch.undo()
    get_settings.cache_clear()


def test_catalog_shows_each_providers_codes_offer_and_unmapped_entries(sim, sim_providers):
    sim.set_offer("tg", "0", "42.50", 7, protocol="sms_activate")
    result = runner.invoke(
        app, ["catalog", "--refresh", "--service", "telegram", "--country", "RU"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    cells = [
        [c.strip() for c in line.strip("│ ").split("│")]
        for line in result.output.splitlines()
        if line.startswith("│")
    ]
    offers = {row[0]: row[1:] for row in cells if len(row) == 5}  # the mapping tables have 4 columns
    assert offers == {
        "sms_man": ["3", "1", "10.00 USD", "100"],
        "onlinesim": ["telegram", "7", "10.0 USD", "100"],  # OnlineSim prices are JSON numbers
        "sms_activate": ["tg", "0", "42.50 RUB", "7"],
    }
    assert "unmapped services: qb (Quibbit)" in result.output
    assert "unmapped countries: 12 (USA (virtual))" in result.output
    assert [(p, a) for p, a, _ in sim.calls if a in ("get-number", "getNum", "getNumber")] == []


def test_catalog_refuses_a_provider_that_is_not_configured(no_providers, database_url):
    result = runner.invoke(app, ["catalog", "--provider", "onlinesim"])
    assert result.exit_code == 2
    assert "not configured: onlinesim" in result.output


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--profile", "pixel9"], "unknown device profile 'pixel9'"),
        (["--provider", "twilio"], "'twilio' is not one of 'sms_man', 'onlinesim', 'sms_activate'"),
    ],
    ids=["profile", "provider"],
)
def test_unknown_profile_or_provider_exits_2_before_any_run(no_providers, monkeypatch, options, words):
    from provisioner.settings import get_settings
    from provisioner.store import get_sessionmaker
    from provisioner.store import repository as repo

    monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_MAN__API_KEY", "k")
    get_settings.cache_clear()
    with get_sessionmaker()() as db:
        before = [s.id for s in repo.list_sessions(db, limit=1000)]
    result = runner.invoke(app, ["provision", *options], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert words in result.output
    with get_sessionmaker()() as db:
        assert [s.id for s in repo.list_sessions(db, limit=1000)] == before  # no run started


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--max-price", "99 USD"], "above the ceiling 0.50 USD (PROVISIONER_SPEND__MAX_PRICE)"),
        (["--max-price", "0.0000001 USD"], "fixed notation"),
        (["--provider", "sms_man", "--provider", "sms_man"], "each provider at most once"),
        (["--service", "t" * 65], "at most 64 characters"),
    ],
    ids=["above-ceiling", "seven-decimals", "duplicate-provider", "long-service"],
)
def test_unbounded_or_above_ceiling_requests_exit_2_before_any_run(no_providers, monkeypatch, options, words):
    from provisioner.settings import get_settings
    from provisioner.store import get_sessionmaker
    from provisioner.store import repository as repo

    monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_MAN__API_KEY", "k")
    monkeypatch.setenv("PROVISIONER_SPEND__MAX_PRICE", "0.50 USD")
    get_settings.cache_clear()
    with get_sessionmaker()() as db:
        before = [s.id for s in repo.list_sessions(db, limit=1000)]
    result = runner.invoke(app, ["provision", *options], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split())
    with get_sessionmaker()() as db:
        assert [s.id for s in repo.list_sessions(db, limit=1000)] == before


def test_every_option_of_every_command_says_what_it_does():
    import click
    import typer.main

    missing = []

    def walk(command: click.Command, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")
        missing.extend(
            f"{path} {param.opts[0]}"
            for param in command.params
            if isinstance(param, click.Option) and not param.help and param.name != "help"
        )

    walk(typer.main.get_command(app), "provisioner")
    assert missing == [], missing


def test_executor_without_a_prefect_api_refuses_to_start(tmp_path):
    """Without PREFECT_API_URL Prefect would run a throwaway server of its own: exit 2 instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("provisioner")), "executor"],
        env={**env, "PREFECT_HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PREFECT_API_URL is not set" in done.stderr
