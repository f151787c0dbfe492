"""Budgets on the real database: the reservation is the pending lease, taken under a lock per budget."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from provisioner.settings import load_settings
from provisioner.steps import budgets
from provisioner.steps.spend import OVERALL, BudgetExhausted
from provisioner.store import LeaseOutcome
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.store import spend as spendrepo
from provisioner.values.money import Money

CAP = Money.parse("0.30 USD")


def settings(**spend):
    return load_settings(spend=spend)


def new_session(db_sessions, owner: str = "acme") -> str:
    with db_sessions.begin() as db:
        return repo.create_session(db, service="telegram", country="RU", actor="test", owner=owner).id


def buy(db_sessions, config, sid: str, cap: Money = CAP) -> int:
    """Reserve and record the pending lease in one transaction, as a purchase does."""
    with db_sessions.begin() as db:
        owner = repo.get_session(db, sid).owner
        budgets.reserve(db, config, owner, cap)
        return lease_repo.record_lease_pending(
            db, sid, provider="sms_man", service="1", country="0", attempt=1, currency="USD", cap=cap.amount
        ).id


def sold(db_sessions, lease_id: int, price: str) -> None:
    from datetime import UTC, datetime

    with db_sessions.begin() as db:
        lease_repo.complete_lease(
            db,
            lease_id,
            lease_repo.BoughtNumber(f"a{lease_id}", "+79000000000", Decimal(price), "USD", datetime.now(UTC)),
        )


class TestReservation:
    def test_twenty_concurrent_purchases_fit_a_budget_of_three(self, db_sessions) -> None:
        with db_sessions.begin() as db:
            spendrepo.set_budget(db, "acme", Decimal("1.00"), "USD")
        config = settings()
        sids = [new_session(db_sessions) for _ in range(20)]
        start, results, lock = threading.Barrier(20), [], threading.Lock()

        def one(sid: str) -> None:
            start.wait(timeout=10)
            try:
                outcome = buy(db_sessions, config, sid)
            except BudgetExhausted as exc:
                outcome = exc
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=one, args=(sid,)) for sid in sids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        bought = [r for r in results if isinstance(r, int)]
        refused = [r for r in results if isinstance(r, BudgetExhausted)]
        assert (len(bought), len(refused)) == (3, 17)
        assert all(r.state.key == "acme" and "budget exhausted" in str(r) for r in refused)
        with db_sessions() as db:
            [state] = budgets.budget_states(db, config, "acme")
        assert state.spent == Decimal("0.90") and state.remaining == Decimal("0.10")

    def test_sold_counts_the_charge_and_a_refund_or_refusal_frees_the_budget(self, db_sessions) -> None:
        config = settings(daily_budget="1.00 USD/day")
        first, second, third = (buy(db_sessions, config, new_session(db_sessions)) for _ in range(3))
        with pytest.raises(BudgetExhausted) as caught:
            buy(db_sessions, config, new_session(db_sessions))
        assert caught.value.state.key == OVERALL
        assert caught.value.state.as_json()["spent"] == "0.9000 USD"
        sold(db_sessions, first, "0.10")  # charged less than the cap: the rest is free again
        with db_sessions.begin() as db:
            lease_repo.set_lease_outcome(db, second, LeaseOutcome.FAILED)  # refused: released
        fourth = buy(db_sessions, config, new_session(db_sessions))
        sold(db_sessions, third, "0.30")
        sold(db_sessions, fourth, "0.30")
        with db_sessions() as db:
            [state] = budgets.budget_states(db, config, "acme")
        assert state.spent == Decimal("0.70")
        with db_sessions.begin() as db:
            lease_repo.set_lease_outcome(db, fourth, LeaseOutcome.CANCELLED)  # refunded
        with db_sessions() as db:
            [state] = budgets.budget_states(db, config, None)
        assert state.spent == Decimal("0.40")

    def test_no_cap_never_fits_a_budget_and_no_budget_needs_no_cap(self, db_sessions) -> None:
        sid = new_session(db_sessions)
        with db_sessions.begin() as db:
            budgets.reserve(db, settings(), "acme", None)  # no budget: nothing to keep
            with pytest.raises(BudgetExhausted, match="without a price cap"):
                budgets.reserve(db, settings(daily_budget="5 USD"), "acme", None)
        assert sid

    def test_owners_count_apart_and_the_overall_budget_counts_them_all(self, db_sessions) -> None:
        with db_sessions.begin() as db:
            spendrepo.set_budget(db, "acme", Decimal("0.50"), "USD")
        config = settings(daily_budget="0.80 USD")
        buy(db_sessions, config, new_session(db_sessions, "acme"))
        with pytest.raises(BudgetExhausted) as caught:
            buy(db_sessions, config, new_session(db_sessions, "acme"))
        assert caught.value.state.key == "acme"
        buy(db_sessions, config, new_session(db_sessions, "other"))
        with pytest.raises(BudgetExhausted) as caught:
            buy(db_sessions, config, new_session(db_sessions, "other"))
        assert caught.value.state.key == OVERALL
