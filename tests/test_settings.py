import pytest

from settings import SettingsError, load_settings


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("PROVISIONER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir("/")  # no .env from the repository


class TestSettings:
    def test_missing_database_url_names_the_variable(self, clean_env):
        with pytest.raises(SettingsError, match="PROVISIONER_DATABASE__URL is not set"):
            load_settings()

    def test_malformed_values_name_their_variables_without_echoing_them(self, clean_env, monkeypatch):
        monkeypatch.setenv("PROVISIONER_DATABASE__URL", "mysql://secret-pass@db/x")
        monkeypatch.setenv("PROVISIONER_DOCKER__LAUNCH_SLOTS", "many")
        with pytest.raises(SettingsError) as info:
            load_settings()
        message = str(info.value)
        assert "PROVISIONER_DATABASE__URL is invalid" in message
        assert "PROVISIONER_DOCKER__LAUNCH_SLOTS is invalid" in message
        assert "secret-pass" not in message

    def test_nested_provider_settings_and_secret(self, clean_env, monkeypatch):
        monkeypatch.setenv("PROVISIONER_DATABASE__URL", "postgresql://u@h/d")
        monkeypatch.setenv("PROVISIONER_PROVIDERS__ONLINESIM__API_KEY", "k-123")
        monkeypatch.setenv("PROVISIONER_PROVIDERS__ONLINESIM__BASE_URL", "http://127.0.0.1:9/onlinesim/api/")
        settings = load_settings()
        assert settings.database.url.startswith("postgresql+psycopg://")
        assert settings.providers.configured_names() == ["onlinesim"]
        assert "k-123" not in repr(settings) and "k-123" not in str(settings.model_dump())

    def test_dotenv_file_is_read(self, clean_env, monkeypatch, tmp_path):
        (tmp_path / ".env").write_text(
            "PROVISIONER_DATABASE__URL=postgresql://u@h/d\nPROVISIONER_INSTANCE_ID=blue\n"
        )
        monkeypatch.chdir(tmp_path)
        assert load_settings().instance_id == "blue"

    def test_bad_instance_id(self, clean_env, monkeypatch):
        monkeypatch.setenv("PROVISIONER_DATABASE__URL", "postgresql://u@h/d")
        monkeypatch.setenv("PROVISIONER_INSTANCE_ID", "Bad_ID!")
        with pytest.raises(SettingsError, match="PROVISIONER_INSTANCE_ID is invalid"):
            load_settings()

    def test_a_key_alone_keeps_the_default_base_url(self, clean_env, monkeypatch):
        monkeypatch.setenv("PROVISIONER_DATABASE__URL", "postgresql://u@h/d")
        monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_MAN__API_KEY", "k")
        settings = load_settings()
        assert settings.providers.sms_man.base_url == "https://api.sms-man.com/control/"
        assert settings.providers.configured_names() == ["sms_man"]
