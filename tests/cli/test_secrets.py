"""Secret settings from Prefect Secret blocks (by convention) and a secrets directory, below the
environment; `provisioner secrets set` stores a block without the value on the command line."""

from __future__ import annotations

import os

import pytest
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from provisioner.cli.main import app
from provisioner.settings import load_settings

runner = CliRunner()
BLOCK = "provisioner-providers-onlinesim-api-key"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("PROVISIONER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PROVISIONER_DATABASE__URL", "postgresql://u@h/d")
    monkeypatch.chdir(tmp_path)  # no .env


@pytest.fixture
def block_removed_after(prefect_api):
    yield
    with get_client(sync_client=True) as client:
        for document in client.read_block_documents_by_type(block_type_slug="secret"):
            if document.name == BLOCK:
                client.delete_block_document(document.id)


def test_a_secret_block_configures_an_unset_secret_and_the_environment_wins(
    clean_env, block_removed_after, monkeypatch
):
    assert load_settings().providers.onlinesim.api_key is None
    stored = runner.invoke(
        app, ["secrets", "set", "PROVISIONER_PROVIDERS__ONLINESIM__API_KEY"], input="k-from-block\n"
    )
    assert stored.exit_code == 0, stored.output
    assert BLOCK in stored.output and "k-from-block" not in stored.output
    settings = load_settings()
    assert settings.providers.onlinesim.api_key.get_secret_value() == "k-from-block"
    assert settings.providers.configured_names() == ["onlinesim"]
    monkeypatch.setenv("PROVISIONER_PROVIDERS__ONLINESIM__API_KEY", "k-from-env")
    assert load_settings().providers.onlinesim.api_key.get_secret_value() == "k-from-env"
    listed = runner.invoke(app, ["secrets", "list"])
    assert listed.exit_code == 0 and BLOCK in listed.output and "k-from" not in listed.output


def test_a_secrets_directory_file_per_variable(clean_env, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "PROVISIONER_GATEWAY__TOKEN").write_text("tok-from-file\n")
    settings = load_settings(_secrets_dir=secrets)
    assert settings.gateway.token.get_secret_value() == "tok-from-file"


def test_set_refuses_a_name_that_is_not_a_secret_setting(clean_env):
    refused = runner.invoke(app, ["secrets", "set", "PROVISIONER_POOL__CAPACITY"], input="3\n")
    assert refused.exit_code == 2 and "not a secret setting" in refused.output
