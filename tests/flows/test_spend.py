"""Money limits on the real stack (PostgreSQL, Prefect's harness, Docker, the simulator): the
ceiling, the charge checked, the account currency verified, budgets, balances and the spend
report, each checked against the simulator's ledger."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, update
from typer.testing import CliRunner

from flows.provision import ProvisionResult, provision_session
from provisioner.cli.main import app
from provisioner.gateway.metrics import StoreCollector
from provisioner.settings import get_settings
from provisioner.steps import accounts
from provisioner.steps.deps import get_deps, reset_deps
from provisioner.steps.request import ProvisionRequest
from provisioner.store import LeaseOutcome, LeaseRow, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.store import spend as spendrepo
from provisioner.store.models import ProviderAccountRow
from tests.plugins.simulator import SIM_KEY
from tests.support import session, wait_for

pytestmark = pytest.mark.docker
runner = CliRunner()


def reconfigure(monkeypatch, **env: str):
    """The process's Deps with these extra PROVISIONER_* variables (undone by provisioner_env)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    reset_deps()
    return get_deps()


def leases(deps, session_id: str) -> list[LeaseRow]:
    with deps.sessions() as db:
        return lease_repo.leases_for_session(db, session_id)


def provision(**request):
    """The provision's final state and its session id."""
    state = provision_session(request=ProvisionRequest(**request), return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, ProvisionResult):
        return state, result.session_id
    with get_deps().sessions() as db:
        [row] = repo.list_sessions(db, limit=1)
    return state, row.id


@pytest.fixture
def usd_sms_activate(provisioner_env, sim, monkeypatch):
    """sms_activate billing in USD and saying so in getNumberV2 (status-codes dialect); a ceiling
    of 0.50 USD; its telegram/RU offer listed at 0.30 USD."""
    sim.configure(dialect="status-codes", account_currency={SIM_KEY: "USD"})
    sim.set_offer("tg", "0", "0.30", 20, protocol="sms_activate")
    sim.set_sms_delay(0.3)
    return reconfigure(
        monkeypatch,
        PROVISIONER_PROVIDERS__SMS_ACTIVATE__CURRENCY="USD",
        PROVISIONER_SPEND__MAX_PRICE="0.50 USD",
    )


class TestCeiling:
    def test_a_request_without_a_cap_never_buys_above_the_ceiling(self, usd_sms_activate, sim):
        sim.set_offer("tg", "0", "0.30", 20, protocol="sms_activate", dearer="0.80")  # dearer sold first
        for _ in range(2):
            state, sid = provision(providers=["sms_activate"])
            assert state.is_completed() and session(usd_sms_activate, sid).state == State.VERIFIED
        ledger = sim.ledger()
        assert [e.amount for e in ledger.purchases] == [Decimal("0.30")] * 2  # never the 0.80 numbers
        assert [p["maxPrice"] for p in sim.requests("sms_activate", "getNumberV2")] == ["0.50", "0.50"]

    def test_without_the_ceiling_the_same_request_buys_the_dearer_number(
        self, provisioner_env, sim, monkeypatch
    ):
        """The control: the simulator really sells dearer first when nothing caps the purchase."""
        sim.configure(dialect="status-codes", account_currency={SIM_KEY: "USD"})
        sim.set_offer("tg", "0", "0.30", 20, protocol="sms_activate", dearer="0.80")
        sim.set_sms_delay(0.3)
        reconfigure(monkeypatch, PROVISIONER_PROVIDERS__SMS_ACTIVATE__CURRENCY="USD")
        state, _ = provision(providers=["sms_activate"])
        assert state.is_completed()
        assert [e.amount for e in sim.ledger().purchases] == [Decimal("0.80")]


class TestChargeChecked:
    def test_a_charge_above_the_cap_is_cancelled_at_once_and_the_next_number_is_within(
        self, usd_sms_activate, sim
    ):
        sim.configure(overcharge=Decimal(2), overcharge_times=1)  # charges 0.60 for the 0.30 quoted
        sim.set_offer("telegram", "7", "0.40", 20, protocol="onlinesim")
        state, sid = provision(providers=["sms_activate", "onlinesim"])
        assert state.is_completed(), state.message
        over, kept = leases(usd_sms_activate, sid)
        assert (over.provider, over.outcome, over.overcharged) == (
            "sms_activate",
            LeaseOutcome.CANCELLED,
            True,
        )
        assert (over.price, over.price_source, over.cap) == (Decimal("0.60"), "reply", Decimal("0.50"))
        assert (kept.provider, kept.outcome, kept.overcharged) == ("onlinesim", LeaseOutcome.FINISHED, False)
        ledger = sim.ledger()
        assert [(e.kind, e.amount) for e in ledger.entries if e.activation_id == over.activation_id] == [
            ("purchase", Decimal("0.60")),
            ("refund", Decimal("0.60")),
        ]
        assert ledger.open == []
        with usd_sms_activate.sessions() as db:
            totals = {(p, c): (ch, rf, n) for p, c, ch, rf, n in spendrepo.totals_by_provider(db)}
        assert totals[("sms_activate", "USD")] == (Decimal("0"), Decimal("0.60"), 1)
        assert totals[("onlinesim", "USD")] == (Decimal("0.40"), Decimal("0"), 0)


class TestAccountCurrency:
    def test_an_account_billing_in_another_currency_buys_nothing_and_says_so(self, provisioner_env, sim):
        sim.configure(account_currency={SIM_KEY: "RUB"})  # sms_man is configured as USD (its usual)
        state, sid = provision(providers=["sms_man"])
        assert state.is_failed()
        row = session(provisioner_env, sid)
        assert row.state == State.FAILED
        assert "sms_man bills this account in RUB, prices are read as USD" in row.last_error
        assert "PROVISIONER_PROVIDERS__SMS_MAN__CURRENCY=RUB" in row.last_error
        assert sim.purchases == 0 and leases(provisioner_env, sid) == []

        result = runner.invoke(app, ["catalog", "--provider", "sms_man"], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        [line] = [x for x in result.output.splitlines() if x.startswith("│ sms_man") and "RUB" in x]
        assert "100.0000" in line and "balance" in line and "bills this account in RUB" in line

    def test_a_purchase_reply_in_another_currency_is_cancelled_and_stops_that_provider(
        self, provisioner_env, sim
    ):
        """getNumberV2 names USD where sms_activate is configured as RUB: the number is refunded at
        once, and the next provision buys nothing there."""
        sim.configure(dialect="status-codes", account_currency={SIM_KEY: "USD"})
        sim.set_sms_delay(0.3)
        state, sid = provision(providers=["sms_activate", "sms_man"])
        assert state.is_completed()
        first, kept = leases(provisioner_env, sid)
        assert (first.provider, first.outcome, first.overcharged) == ("sms_activate", "cancelled", False)
        assert kept.provider == "sms_man"
        buys = len(sim.requests("sms_activate", "getNumberV2"))
        state, sid = provision(providers=["sms_activate", "sms_man"])
        assert state.is_completed() and len(sim.requests("sms_activate", "getNumberV2")) == buys
        assert [row.provider for row in leases(provisioner_env, sid)] == ["sms_man"]
        assert sim.ledger().open == []


class TestBudget:
    def test_a_refund_frees_the_budget_and_a_charge_holds_it(self, usd_sms_activate, sim):
        with usd_sms_activate.sessions.begin() as db:
            spendrepo.set_budget(db, "prefect", Decimal("0.30"), "USD")  # one number a day
        sim.set_sms_delay(None)  # the first number gets no code: refunded
        state, first = provision(
            providers=["sms_activate"], max_price="0.30 USD", code_timeout_s=1, number_attempts=1
        )
        assert state.is_failed() and len(sim.ledger().refunds) == 1
        sim.set_sms_delay(0.3)
        state, second = provision(providers=["sms_activate"], max_price="0.30 USD")
        assert state.is_completed()  # the refund freed the budget
        state, third = provision(providers=["sms_activate"], max_price="0.30 USD")
        assert state.is_failed()
        row = session(usd_sms_activate, third)
        assert row.last_error.startswith("budget exhausted: prefect budget 0.30 USD/day")
        assert leases(usd_sms_activate, third) == [] and sim.purchases == 2  # nothing bought, no device
        assert row.device_id is None


def make_stale(deps) -> None:
    """Every account's last read older than the balance interval (a minute has passed)."""
    with deps.sessions.begin() as db:
        db.execute(update(ProviderAccountRow).values(checked_at=func.now() - timedelta(minutes=2)))


def low_balance_events() -> list:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(
            filter=EventFilter(event=EventNameFilter(name=[accounts.LOW_BALANCE_EVENT])), limit=50
        )
    return [e for e in page.events if e.resource.id == "provisioner.provider.sms_activate"]


class TestBalances:
    def test_balance_metric_and_the_low_balance_event_once_per_crossing(
        self, usd_sms_activate, sim, monkeypatch
    ):
        deps = reconfigure(monkeypatch, PROVISIONER_SPEND__LOW_BALANCE="99.50 USD")
        emitted = []

        def emit(*args) -> None:
            if args[0] == "sms_activate":  # the simulator's accounts share one balance
                emitted.append(args[:2])
            accounts.emit_low_balance(*args)

        def read_with(balance: str) -> None:
            with sim.state.lock:
                sim.state.balances[SIM_KEY] = Decimal(balance)
            make_stale(deps)
            accounts.read_stale_accounts(deps, emit=emit)

        assert accounts.read_stale_accounts(deps, emit=emit)["sms_activate"] == "100.0000 USD"
        assert accounts.read_stale_accounts(deps, emit=emit)["sms_activate"] == "fresh"  # once a minute
        read_with("99.00")  # crossed below: the event
        read_with("98.00")  # still below: no second event
        assert emitted == [("sms_activate", Decimal("99.00"))]
        read_with("100.00")
        read_with("90.00")  # crossed again
        assert emitted == [("sms_activate", Decimal("99.00")), ("sms_activate", Decimal("90.00"))]
        wait_for(lambda: len(low_balance_events()) == 2, timeout=30)
        [first, _] = sorted(low_balance_events(), key=lambda e: e.occurred)
        assert first.resource.id == "provisioner.provider.sms_activate"
        assert first.payload == {
            "provider": "sms_activate", "balance": "99.00", "currency": "USD", "threshold": "99.50 USD"
        }  # fmt: skip

        registry = CollectorRegistry()
        registry.register(StoreCollector(deps.sessions))
        assert (
            registry.get_sample_value(
                "provisioner_provider_balance", {"provider": "sms_activate", "currency": "USD"}
            )
            == 90.0
        )

    def test_a_provider_whose_balance_is_below_the_cap_is_skipped_without_a_purchase_call(
        self, usd_sms_activate, sim
    ):
        sim.set_offer("telegram", "7", "0.40", 20, protocol="onlinesim")
        with sim.state.lock:
            sim.state.balances[SIM_KEY] = Decimal("0.45")  # below the 0.50 USD cap
        state, sid = provision(providers=["sms_activate", "onlinesim"])
        assert state.is_failed()
        assert (
            "sms_activate: balance 0.4500 USD is below the cap 0.50 USD"
            in session(usd_sms_activate, sid).last_error
        )
        assert sim.requests("sms_activate", "getNumberV2") == [] and sim.requests("onlinesim", "getNum") == []


class TestSpendReport:
    def test_spend_json_sums_equal_the_ledger(self, usd_sms_activate, sim):
        sim.configure(overcharge=Decimal(2), overcharge_times=1)
        sim.set_offer("telegram", "7", "0.40", 20, protocol="onlinesim")
        for _ in range(2):
            state, _ = provision(providers=["sms_activate", "onlinesim"])
            assert state.is_completed()
        sim.set_sms_delay(None)
        state, _ = provision(providers=["sms_activate"], code_timeout_s=1, number_attempts=1)  # refunded
        assert state.is_failed()
        ledger = sim.ledger()
        assert ledger.open == [] and len(ledger.purchases) == 4 and len(ledger.refunds) == 2
        result = runner.invoke(app, ["spend", "--since", "1d", "--by", "provider", "--json"])
        assert result.exit_code == 0, result.output
        body = json.loads(result.output)
        by_provider = {row["provider"]: row for row in body["rows"]}
        for protocol in ("sms_activate", "onlinesim"):
            bought = sum((e.amount for e in ledger.purchases if e.protocol == protocol), Decimal(0))
            refunded = sum((e.amount for e in ledger.refunds if e.protocol == protocol), Decimal(0))
            row = by_provider[protocol]
            assert (Decimal(row["charged"]), Decimal(row["refunded"])) == (bought - refunded, refunded), row
            assert row["currency"] == "USD" and Decimal(row["open"]) == Decimal(row["reserved"]) == 0
        assert by_provider["sms_activate"]["overcharged"] == 1
        total = body["totals"]["USD"]
        assert Decimal(total["charged"]) == sum(e.amount for e in ledger.purchases) - sum(
            e.amount for e in ledger.refunds
        )
        by_day = json.loads(runner.invoke(app, ["spend", "--by", "day", "--json"]).output)["rows"]
        assert sum(Decimal(r["charged"]) for r in by_day) == Decimal(total["charged"])  # one row a day
        assert runner.invoke(app, ["spend", "--by", "colour"]).exit_code == 2
        assert runner.invoke(app, ["spend", "--since", "forever"]).exit_code == 2


def test_deploy_creates_the_low_balance_automation_disabled_once(provisioner_env):
    from prefect.client.orchestration import get_client

    from provisioner.prefect_api.setup import LOW_BALANCE_AUTOMATION, ensure_low_balance_automation

    assert ensure_low_balance_automation() == "created (disabled)"
    assert ensure_low_balance_automation() == "exists"
    with get_client(sync_client=True) as client:
        [automation] = client.read_automations_by_name(LOW_BALANCE_AUTOMATION)
        client.delete_automation(automation.id)
    assert automation.enabled is False
    assert automation.trigger.expect == {accounts.LOW_BALANCE_EVENT}


def test_the_pool_flow_reads_the_balances_at_most_once_a_minute(provisioner_env, sim):
    from flows.maintain_pool import maintain_pool

    maintain_pool()
    maintain_pool()
    assert len(sim.requests("sms_man", "get-balance")) == 1
    with provisioner_env.sessions() as db:
        rows = {r.provider: r for r in spendrepo.list_accounts(db)}
    assert set(rows) == {"sms_man", "onlinesim", "sms_activate"}
    assert rows["sms_man"].balance == Decimal("100") and rows["sms_man"].currency == "USD"
    assert rows["sms_man"].currency_source == accounts.CONFIGURED  # the reply names none
