"""Catalogs learned from each protocol's listing endpoints, canonical names, money, foreign codes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from providers.catalog import Codes, builtin, learn, target
from providers.errors import StopError
from provisioner.values.canonical import check_country, check_service
from provisioner.values.money import Money, NoRate, cap_in
from tests.providers.specs import SPECS

TELEGRAM_RU = {
    "sms_man": Codes("3", "1"),
    "onlinesim": Codes("telegram", "7"),
    "sms_activate": Codes("tg", "0"),
}


class TestLearnedFromListings:
    @pytest.mark.parametrize("name", list(TELEGRAM_RU))
    def test_telegram_in_russia_maps_to_each_protocols_own_codes(self, sim, make_provider, name):
        catalog = learn(name, make_provider(name).listing())
        assert target(catalog, "telegram", "RU") == TELEGRAM_RU[name]
        assert catalog.source == "listing"

    def test_kazakhstan_is_77_at_onlinesim_and_2_at_sms_activate(self, sim, make_provider):
        assert learn("onlinesim", make_provider("onlinesim").listing()).countries["KZ"] == "77"
        assert learn("sms_activate", make_provider("sms_activate").listing()).countries["KZ"] == "2"

    def test_onlinesim_lists_services_per_country(self, sim, make_provider):
        catalog = learn("onlinesim", make_provider("onlinesim").listing())  # no Telegram in 77
        assert target(catalog, "whatsapp", "KZ") == Codes("whatsapp", "77")
        assert target(catalog, "telegram", "KZ") == "no code for service telegram in KZ"
        assert "KZ" not in catalog.sold_in["telegram"] and "KZ" in catalog.sold_in["whatsapp"]
        assert target(catalog.with_overrides({"telegram": "telegram"}, {}), "telegram", "KZ") == Codes(
            "telegram", "77"
        )  # an operator's override is not second-guessed

    def test_entries_matching_no_canonical_name_are_listed_as_unmapped(self, sim, make_provider):
        catalog = learn("sms_activate", make_provider("sms_activate").listing())
        assert catalog.unmapped_services == {"qb": "Quibbit"}
        # "USA (virtual)" loses to the exact "USA" and stays unmapped
        assert (catalog.countries["US"], catalog.unmapped_countries) == ("187", {"12": "USA (virtual)"})

    def test_listings_use_each_protocols_own_endpoints(self, sim, make_provider):
        for name in TELEGRAM_RU:
            make_provider(name).listing()
        assert [(p, a) for p, a, _ in sim.calls] == [
            ("sms_man", "applications"),
            ("sms_man", "countries"),
            ("onlinesim", "getNumbersStats"),
            ("sms_activate", "getServicesList"),
            ("sms_activate", "getCountries"),
        ]
        assert sim.requests("onlinesim", "getNumbersStats")[0]["country"] == "all"


class TestForeignCodesFail:
    """The simulator enforces each protocol's code space, as production does."""

    @pytest.mark.parametrize(
        ("name", "service", "country", "code"),
        [
            ("sms_activate", "telegram", "0", "BAD_SERVICE"),
            ("sms_activate", "tg", "7", "BAD_COUNTRY"),
            ("onlinesim", "tg", "7", "ERROR_NO_SERVICE"),
            ("sms_man", "tg", "1", "bad_application"),
        ],
    )
    def test_a_code_from_another_protocol_is_refused(self, sim, make_provider, name, service, country, code):
        sim.set_offer("tg", "0", "1", 5, protocol="sms_activate")  # offers exist, but not under these codes
        with pytest.raises(StopError) as caught:
            make_provider(name).acquire(service, country, None)
        assert caught.value.code == code
        assert f"PROVISIONER_PROVIDERS__{name.upper()}__" in str(caught.value)
        assert sim.purchases == 0

    def test_set_offer_refuses_codes_no_protocol_has(self, sim):
        with pytest.raises(ValueError, match="no protocol"):
            sim.set_offer("telegram", "RU", "1", 1)


class TestTarget:
    def test_provider_specific_code_goes_to_that_provider_only(self):
        catalog = builtin("sms_activate")
        assert target(catalog, "sms_activate:xx", "RU") == Codes("xx", "0")
        assert (
            target(builtin("onlinesim"), "sms_activate:xx", "RU")
            == "service sms_activate:xx is specific to sms_activate"
        )

    def test_missing_codes_are_reasons(self):
        assert target(builtin("sms_man"), "telegram", "KZ") == "no code for service telegram in KZ"
        assert target(builtin("sms_activate"), "telegram", "CL") == "no code for country CL"

    def test_overrides_win(self):
        catalog = builtin("sms_man").with_overrides({"telegram": "3"}, {"ru": "1"})
        assert target(catalog, "telegram", "RU") == Codes("3", "1")

    def test_builtin_onlinesim_uses_calling_codes_and_77_for_kazakhstan(self):
        countries = builtin("onlinesim").countries
        assert (countries["RU"], countries["KZ"], countries["GB"], countries["DE"]) == ("7", "77", "44", "49")
        assert "CA" not in countries  # shares +1 with the US: learned or overridden, never guessed


class TestCanonicalNames:
    def test_unknown_service_lists_close_matches(self):
        with pytest.raises(ValueError, match=r"unknown service 'telgram'; did you mean telegram"):
            check_service("telgram")

    def test_names_and_titles_normalize(self):
        assert [check_service(v) for v in ("Telegram", "WHATSAPP", "sms_man:3")] == [
            "telegram",
            "whatsapp",
            "sms_man:3",
        ]
        assert [check_country(v) for v in ("ru", "Kazakhstan", "England", "onlinesim:77")] == [
            "RU",
            "KZ",
            "GB",
            "onlinesim:77",
        ]

    def test_unknown_country_lists_close_matches(self):
        with pytest.raises(ValueError, match=r"did you mean RU \(Russian Federation\)"):
            check_country("Rusia")


class TestMoney:
    @pytest.mark.parametrize("text", ["0.50 USD", "0.5usd", "USD 0.50", {"amount": "0.5", "currency": "usd"}])
    def test_parse(self, text):
        assert Money.parse(text) == Money(Decimal("0.5"), "USD")

    @pytest.mark.parametrize("text", ["0.50", "20", "USD", "-1 USD", "0 USD"])
    def test_a_bare_or_non_positive_amount_is_refused(self, text):
        with pytest.raises(ValueError):
            Money.parse(text)

    def test_cap_converts_both_ways_rounding_down(self):
        fx = {"RUB": Decimal("0.011")}
        assert cap_in(Money(Decimal("0.50"), "USD"), "RUB", fx) == Decimal("45.4545")
        assert cap_in(Money(Decimal("40"), "RUB"), "USD", fx) == Decimal("0.4400")
        assert cap_in(Money(Decimal("40"), "RUB"), "RUB", {}) == Decimal("40")

    def test_no_rate_no_comparison(self):
        with pytest.raises(NoRate, match="EUR"):
            cap_in(Money(Decimal("1"), "EUR"), "RUB", {"RUB": Decimal("0.011")})


def test_specs_use_native_codes_for_telegram_in_russia():
    assert {s.name: Codes(s.service, s.country) for s in SPECS.values()} == TELEGRAM_RU  # in every dialect
