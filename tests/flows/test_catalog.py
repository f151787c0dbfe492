"""One canonical request reaches every provider with that provider's own codes and currency.

Real PostgreSQL, Prefect and the simulator (which refuses foreign codes as production does); the
simulator's request log shows exactly what each provider was asked.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from flows.provision import ProvisionResult, provision_session
from provisioner.settings import get_settings
from provisioner.steps import catalogs
from provisioner.steps.deps import get_deps, reset_deps
from provisioner.steps.numbers import NoNumberAvailable, rent_number
from provisioner.steps.request import ProvisionRequest, RentRequest
from provisioner.store import LeaseOutcome
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.values.money import Money

pytestmark = pytest.mark.docker

BUY_ACTIONS = ("get-number", "getNum", "getNumber")


def reconfigure(monkeypatch, **env: str):
    """The process's Deps with these extra PROVISIONER_* variables (undone by provisioner_env)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    reset_deps()
    return get_deps()


def new_session(deps) -> str:
    with deps.sessions.begin() as db:
        return repo.create_session(db, service="telegram", country="RU", actor="test").id


def lease_rows(deps, session_id):
    with deps.sessions() as db:
        return [
            (r.provider, r.service, r.country, r.currency, r.outcome)
            for r in lease_repo.leases_for_session(db, session_id)
        ]


def purchases(sim) -> list[tuple[str, dict[str, str]]]:
    return [(p, params) for p, a, params in sim.calls if a in BUY_ACTIONS]


def test_telegram_in_russia_reaches_each_provider_with_its_own_codes(provisioner_env, sim):
    deps = provisioner_env
    sim.set_sms_delay(0.2)
    sim.inject("no_numbers", protocol="sms_man", action="get-number")
    sim.inject("no_numbers", protocol="onlinesim", action="getNum")
    request = ProvisionRequest(
        service="telegram", country="RU", providers=["sms_man", "onlinesim", "sms_activate"]
    )
    result = provision_session(request=request)
    assert isinstance(result, ProvisionResult)
    assert (result.state, result.provider) == ("verified", "sms_activate")
    assert sim.requests("sms_man", "get-number") == [
        {"application_id": "3", "country_id": "1", "currency": "USD"}
    ]
    assert sim.requests("onlinesim", "getNum") == [{"service": "telegram", "country": "7", "number": "true"}]
    assert sim.requests("sms_activate", "getNumber") == [
        {"action": "getNumber", "service": "tg", "country": "0"}
    ]
    assert lease_rows(deps, result.session_id) == [
        ("sms_man", "3", "1", "USD", LeaseOutcome.FAILED),
        ("onlinesim", "telegram", "7", "USD", LeaseOutcome.FAILED),
        ("sms_activate", "tg", "0", "RUB", LeaseOutcome.FINISHED),
    ]
    with deps.sessions() as db:
        row = repo.get_session(db, result.session_id)
        assert (row.service, row.country) == ("telegram", "RU")


def test_an_unknown_service_is_refused_before_anything_is_bought(provisioner_env, sim):
    sim.calls.clear()  # the fixture's catalog refresh
    state = provision_session(request={"service": "telgram"}, return_state=True)
    assert state.is_failed()
    assert "unknown service 'telgram'; did you mean telegram" in state.message
    assert sim.calls == []  # no provider was asked anything
    with provisioner_env.sessions() as db:
        assert repo.list_sessions(db) == []


def test_a_provider_without_a_code_is_skipped_with_the_reason_never_asked(provisioner_env, sim):
    deps = provisioner_env
    sid = new_session(deps)
    sim.calls.clear()  # the fixture's catalog refresh
    with pytest.raises(NoNumberAvailable) as caught:
        # Only the SMS-Activate protocol lists instagram, and not in France.
        rent = RentRequest("instagram", "FR", ("sms_man", "onlinesim", "sms_activate"))
        rent_number(deps, sid, rent, attempt=1, actor="test")
    assert caught.value.reasons == {
        "sms_man": "no code for service instagram in FR",
        "onlinesim": "no code for service instagram in FR",
        "sms_activate": "no code for country FR",
    }
    assert "onlinesim: no code for service instagram in FR" in str(caught.value)
    assert sim.calls == [] and lease_rows(deps, sid) == []  # no provider was asked anything


def test_onlinesim_is_skipped_where_its_listing_sells_no_telegram(provisioner_env, sim):
    deps = provisioner_env
    sid = new_session(deps)
    sim.calls.clear()  # the fixture's catalog refresh
    rented = rent_number(
        deps, sid, RentRequest("telegram", "KZ", ("onlinesim", "sms_activate")), attempt=1, actor="test"
    )
    assert rented.provider == "sms_activate"
    assert purchases(sim) == [("sms_activate", {"action": "getNumber", "service": "tg", "country": "2"})]
    assert sim.requests("onlinesim") == []
    with pytest.raises(NoNumberAvailable, match=r"\(onlinesim: no code for service telegram in KZ\)"):
        rent_number(deps, sid, RentRequest("telegram", "KZ", ("onlinesim",)), attempt=2, actor="test")


def test_a_provider_specific_code_goes_to_that_provider_as_is(provisioner_env, sim):
    deps = provisioner_env
    sid = new_session(deps)
    rented = rent_number(
        deps, sid, RentRequest("sms_activate:wa", "KZ", ("sms_man", "sms_activate")), attempt=1, actor="test"
    )
    assert rented.provider == "sms_activate"
    assert purchases(sim) == [("sms_activate", {"action": "getNumber", "service": "wa", "country": "2"})]
    with pytest.raises(
        NoNumberAvailable, match="sms_man: service sms_activate:wa is specific to sms_activate"
    ):
        rent_number(deps, sid, RentRequest("sms_activate:wa", "KZ", ("sms_man",)), attempt=2, actor="test")


def test_settings_override_the_learned_catalog(provisioner_env, sim, monkeypatch):
    deps = reconfigure(monkeypatch, PROVISIONER_PROVIDERS__SMS_MAN__SERVICES='{"telegram": "2"}')
    sid = new_session(deps)
    rent_number(deps, sid, RentRequest("telegram", "KZ", ("sms_man",)), attempt=1, actor="t")
    assert sim.requests("sms_man", "get-number") == [
        {"application_id": "2", "country_id": "2", "currency": "USD"}
    ]


# --- money: a cap in one currency, providers billing in another ------------------------------

RATES = '{"RUB": "0.011"}'  # 1 RUB = 0.011 USD


@pytest.mark.parametrize(
    ("cap", "rub_price", "usd_price", "sold_by", "max_price_sent"),
    [
        # 50 RUB = 0.55 USD > 0.50 USD: the RUB-priced provider may not sell, the USD one does.
        # (SMS-MAN takes an integer maxPrice, rounded up: its quoted price was checked against 0.50 first.)
        ("0.50 USD", "50", "0.45", "sms_man", {"sms_man": "1"}),
        # 45 RUB = 0.495 USD <= 0.50 USD: it sells, told the cap in its own currency.
        ("0.50 USD", "45", "0.45", "sms_activate", {"sms_activate": "45.4545"}),
        # vice versa: 0.45 USD = 40.9 RUB > 40 RUB; the USD-priced provider may not sell.
        ("40 RUB", "39", "0.45", "sms_activate", {"sms_activate": "40"}),
    ],
)
def test_a_cap_in_one_currency_never_lets_a_provider_in_another_sell_above_it(
    provisioner_env, sim, monkeypatch, cap, rub_price, usd_price, sold_by, max_price_sent
):
    deps = reconfigure(monkeypatch, PROVISIONER_FX=RATES)
    sim.set_offer("tg", "0", rub_price, 5, protocol="sms_activate")
    sim.set_offer("3", "1", usd_price, 5, protocol="sms_man")
    order = ["sms_activate", "sms_man"] if cap.endswith("USD") else ["sms_man", "sms_activate"]
    sid = new_session(deps)
    rented = rent_number(
        deps, sid, RentRequest("telegram", "RU", tuple(order), Money.parse(cap)), attempt=1, actor="test"
    )
    assert rented.provider == sold_by
    assert [e.protocol for e in sim.ledger().purchases] == [sold_by]
    sent = {p: params["maxPrice"] for p, params in purchases(sim)}
    assert sent == max_price_sent
    expected_price = Decimal(rub_price if sold_by == "sms_activate" else usd_price)
    assert (rented.price, rented.currency) == (expected_price, "RUB" if sold_by == "sms_activate" else "USD")


def test_without_a_rate_the_other_currency_is_skipped_not_compared(provisioner_env, sim):
    deps = provisioner_env  # no PROVISIONER_FX
    sim.set_offer("tg", "0", "0.10", 5, protocol="sms_activate")  # 0.10 RUB: "cheaper" only as a bare number
    sim.set_offer("3", "1", "0.45", 5, protocol="sms_man")
    sim.calls.clear()  # the fixture's catalog refresh
    sid = new_session(deps)
    rented = rent_number(
        deps,
        sid,
        RentRequest("telegram", "RU", ("sms_activate", "sms_man"), Money.parse("0.50 USD")),
        attempt=1,
        actor="test",
    )
    assert rented.provider == "sms_man"
    assert sim.requests("sms_activate") == []  # never asked
    assert lease_rows(deps, sid) == [("sms_man", "3", "1", "USD", LeaseOutcome.ACTIVE)]


def test_sms_activate_skipped_for_currency_names_the_setting(provisioner_env, sim):
    deps = provisioner_env
    sid = new_session(deps)
    with pytest.raises(NoNumberAvailable) as caught:
        rent_number(
            deps,
            sid,
            RentRequest("telegram", "RU", ("sms_activate",), Money.parse("0.50 USD")),
            attempt=1,
            actor="test",
        )
    assert "prices in RUB, the cap is 0.50 USD" in caught.value.reasons["sms_activate"]
    assert "PROVISIONER_FX" in caught.value.reasons["sms_activate"]


# --- catalogs in the database -------------------------------------------------------------------


def test_a_catalog_is_learned_on_first_use_and_a_failed_refresh_keeps_the_old_one(provisioner_env, sim):
    deps = provisioner_env
    with deps.sessions.begin() as db:
        db.execute(text("DELETE FROM provider_catalogs"))
    sim.calls.clear()
    sid = new_session(deps)
    rent_number(deps, sid, RentRequest("telegram", "RU", ("sms_man",)), attempt=1, actor="t")
    assert [a for p, a, _ in sim.calls if p == "sms_man"][:2] == ["applications", "countries"]
    learned = catalogs.stored(deps, "sms_man")
    assert learned is not None and learned.services["telegram"] == "3"

    sim.inject("http", status=502, protocol="sms_man", action="applications", times=None)
    results = catalogs.refresh_stale(deps, force=True)
    assert results["sms_man"].startswith("failed: TransientError")
    assert results["onlinesim"].startswith("refreshed") and results["sms_activate"].startswith("refreshed")
    assert catalogs.stored(deps, "sms_man") == learned


def test_a_listing_failing_at_first_use_gives_the_builtin_table_once(provisioner_env, sim):
    deps = provisioner_env
    with deps.sessions.begin() as db:
        db.execute(text("DELETE FROM provider_catalogs"))
    sim.calls.clear()  # the fixture's catalog refresh
    sim.inject("http", status=502, protocol="sms_activate", action="getServicesList", times=None)
    sim.inject("http", status=502, protocol="sms_man", action="applications", times=None)
    sid = new_session(deps)
    for attempt in (1, 2):
        rented = rent_number(
            deps, sid, RentRequest("telegram", "RU", ("sms_activate",)), attempt=attempt, actor="test"
        )
        assert rented.provider == "sms_activate"
    assert [p["service"] for p in sim.requests("sms_activate", "getNumber")] == ["tg", "tg"]  # built-in codes
    assert len(sim.requests("sms_activate", "getServicesList")) == 1  # not asked again by the second
    assert catalogs.is_stale(deps, catalogs.stored(deps, "sms_activate"))  # the next pass tries again
    with pytest.raises(NoNumberAvailable) as caught:
        rent_number(deps, sid, RentRequest("telegram", "RU", ("sms_man",)), attempt=3, actor="test")
    assert caught.value.reasons == {
        "sms_man": "no code for service telegram in RU (built-in table: its listings could not be read)"
    }


def test_reconcile_refreshes_catalogs_older_than_their_refresh_age(provisioner_env, sim):
    from flows.reconcile import reconcile_sessions

    deps = provisioner_env
    with deps.sessions.begin() as db:
        db.execute(
            text(
                "UPDATE provider_catalogs SET refreshed_at = now() - interval '2 days' "
                "WHERE provider IN ('onlinesim', 'sms_man')"
            )
        )
    sim.inject("http", status=502, protocol="sms_man", action="applications", times=None)
    summary = reconcile_sessions()
    assert summary.catalogs["sms_activate"] == "fresh"
    assert summary.catalogs["onlinesim"].startswith("refreshed")
    assert summary.catalogs["sms_man"].startswith("failed: TransientError")  # and did not stop the pass
    with deps.sessions() as db:
        ages = dict(
            db.execute(
                text("SELECT provider, now() - refreshed_at < interval '1 hour' FROM provider_catalogs")
            ).all()
        )
    assert ages == {"onlinesim": True, "sms_activate": True, "sms_man": False}


def test_the_run_form_offers_canonical_choices_and_still_takes_a_providers_own_code():
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    schema = parameter_schema(provision_session).model_dump()
    form = schema["definitions"]["ProvisionRequest"]["properties"]
    choices = {
        name: [o.get("enum") for o in form[name]["anyOf"] if "enum" in o][0]
        for name in ("service", "country")
    }
    assert {"telegram", "whatsapp", "google"} <= set(choices["service"]) and "tg" not in choices["service"]
    assert {"RU", "KZ", "GB", "US"} <= set(choices["country"]) and len(choices["country"]) == 249
    # What the Prefect API accepts for a deployment run (it validates against this schema):
    validate({"request": {"service": "sms_activate:tg", "country": "KZ", "max_price": "0.50 USD"}}, schema,
             raise_on_error=True)  # fmt: skip
    for bad in ({"service": "tg"}, {"country": "0"}, {"max_price": "20"}):
        with pytest.raises(ValidationError):
            validate({"request": bad}, schema, raise_on_error=True)
