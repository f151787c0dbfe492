import pytest

from provisioner.settings import SettingsError, load_settings


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


class TestCatalogAndMoneySettings:
    def test_overrides_currency_and_rates_are_read(self, clean_env, monkeypatch):
        from decimal import Decimal

        monkeypatch.setenv("PROVISIONER_DATABASE__URL", "postgresql://u@h/d")
        monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_MAN__SERVICES", '{"telegram": "3"}')
        monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_MAN__COUNTRIES", '{"kz": "2"}')
        monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_MAN__CURRENCY", "RUB")
        monkeypatch.setenv("PROVISIONER_FX", '{"rub": "0.011"}')
        monkeypatch.setenv("PROVISIONER_DEFAULTS__MAX_PRICE", "0.5 usd")
        settings = load_settings()
        sms_man = settings.providers.sms_man
        assert (sms_man.services, sms_man.countries, sms_man.currency) == (
            {"telegram": "3"},
            {"KZ": "2"},
            "RUB",
        )
        assert settings.fx == {"RUB": Decimal("0.011")}
        assert (settings.defaults.service, settings.defaults.country, settings.defaults.max_price) == (
            "telegram",
            "RU",
            "0.5 USD",
        )

    @pytest.mark.parametrize(
        ("variable", "value", "message"),
        [
            (
                "PROVISIONER_PROVIDERS__SMS_MAN__SERVICES",
                '{"telgram": "3"}',
                "unknown canonical service(s) telgram",
            ),
            (
                "PROVISIONER_PROVIDERS__ONLINESIM__COUNTRIES",
                '{"XX": "7"}',
                "unknown ISO 3166 alpha-2 code(s) XX",
            ),
            ("PROVISIONER_DEFAULTS__SERVICE", "tg", "unknown service"),
            ("PROVISIONER_DEFAULTS__COUNTRY", "0", "unknown country"),
            ("PROVISIONER_DEFAULTS__MAX_PRICE", "20", "needs an amount and a currency"),
            ("PROVISIONER_FX", '{"RUB": "0"}', "rates must be positive"),
            ("PROVISIONER_FX", '{"RUB": 0.011', "not valid JSON"),  # a message, not a traceback
            (
                "PROVISIONER_PROVIDERS__SMS_ACTIVATE__CURRENCY",
                "rubles",
                "PROVISIONER_PROVIDERS__SMS_ACTIVATE__CURRENCY",
            ),
        ],
    )
    def test_bad_values_name_their_variable(self, clean_env, monkeypatch, variable, value, message):
        monkeypatch.setenv("PROVISIONER_DATABASE__URL", "postgresql://u@h/d")
        monkeypatch.setenv(variable, value)
        with pytest.raises(SettingsError) as info:
            load_settings()
        assert f"{variable} is invalid" in str(info.value)
        assert message in str(info.value)
        if variable.startswith("PROVISIONER_DEFAULTS__"):
            assert repr(value) not in str(info.value)  # never echoed


class TestSettingsPage:
    def test_docs_settings_md_is_generated_from_the_model(self):
        from provisioner.settings.docs import PAGE, render

        assert PAGE.read_text() == render(), (
            "docs/settings.md is stale: run .venv/bin/python -m provisioner.settings.docs --write"
        )

    def test_every_setting_says_what_it_does(self):
        from provisioner.settings.docs import undocumented

        assert undocumented() == [], "give these fields a description in provisioner/settings/model.py"


def test_the_run_form_offers_the_providers_that_have_a_key(clean_env, monkeypatch):
    from provisioner.steps.request import form_defaults

    assert form_defaults()["providers"] == ["sms_man", "onlinesim", "sms_activate"]  # no key seen
    monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_ACTIVATE__API_KEY", "k")
    assert form_defaults()["providers"] == ["sms_activate"]
