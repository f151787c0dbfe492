"""Tasks that rent, watch and close numbers. Renting registers a rollback that cancels the number."""

from __future__ import annotations

from collections.abc import Callable

from prefect import get_run_logger, task
from prefect.cache_policies import NONE
from prefect.transactions import Transaction, get_transaction

from provisioner.steps import codes, numbers
from provisioner.steps.deps import get_deps
from provisioner.steps.request import RentRequest
from tasks.retry import RETRY_POLICY


@task(name="rent-number", cache_policy=NONE, **RETRY_POLICY)
def rent_number(session_id: str, rent: RentRequest, *, attempt: int, actor: str) -> numbers.RentedNumber:
    rented = numbers.rent_number(get_deps(), session_id, rent, attempt=attempt, actor=actor)
    if txn := get_transaction():
        txn.set("lease_id", rented.lease_id)
    get_run_logger().info(
        "attempt %d: rented a number from %s for %s %s",
        attempt,
        rented.provider,
        rented.price,
        rented.currency,
    )
    return rented


@rent_number.on_rollback
def _cancel_rented_number(txn: Transaction) -> None:
    lease_id = txn.get("lease_id", None)
    if lease_id is not None:
        numbers.cancel_number_waiting(get_deps(), lease_id, max_wait_s=0)


@task(name="wait-for-code", cache_policy=NONE)
def wait_for_code(
    session_id: str, lease_id: int, *, timeout_s: float, actor: str, should_stop: Callable[[], str | None]
) -> codes.CodeResult:
    get_run_logger().info("waiting up to %g s for the code", timeout_s)
    result = codes.wait_for_code(
        get_deps(), session_id, lease_id, timeout_s=timeout_s, actor=actor, should_stop=should_stop
    )
    get_run_logger().info("wait ended: %s", result.reason)
    return result


@task(name="cancel-number", cache_policy=NONE, **RETRY_POLICY)
def cancel_number(lease_id: int, *, max_wait_s: float) -> str:
    """Cancel a number that got no code, waiting out a short minimum-time refusal; never re-buys.
    Returns the outcome recorded: cancelled, finished (its code came just before), cancel_pending."""
    outcome = numbers.cancel_number_waiting(get_deps(), lease_id, max_wait_s=max_wait_s)
    get_run_logger().info("number %s", outcome)
    return outcome


@task(name="finish-number", cache_policy=NONE, **RETRY_POLICY)
def finish_number(lease_id: int) -> None:
    numbers.finish_number(get_deps(), lease_id)
    get_run_logger().info("activation finished")
