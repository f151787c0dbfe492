"""Warm pool tasks: observe the pool and the demand, act on the plan."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from provisioner.pool import Demand, PoolObserved
from provisioner.pool.run import PoolResult, act_pool, observe_demand, observe_pool
from provisioner.steps.accounts import read_stale_accounts
from provisioner.steps.deps import get_deps
from provisioner.steps.launch import launch_slot_for


@task(name="observe-pool", cache_policy=NONE)
def observe_pool_task() -> PoolObserved:
    observed = observe_pool(get_deps())
    get_run_logger().info("observed %d live devices", len(observed.devices))
    return observed


@task(name="observe-demand", cache_policy=NONE)
def observe_demand_task() -> dict[str, Demand]:
    return observe_demand(get_deps())


@task(name="act-pool", cache_policy=NONE)
def act_pool_task(actions: list) -> list[PoolResult]:
    deps, logger = get_deps(), get_run_logger()
    results = act_pool(deps, actions, slot=launch_slot_for(deps, logger))
    for r in results:
        (logger.info if r.ok else logger.error)(
            "%s %s (%s): %s", r.action.kind, r.action.target, r.action.reason, r.result
        )
    return results


@task(name="read-balances", cache_policy=NONE)
def read_balances_task() -> dict[str, str]:
    """Each provider account's balance, at most once per spend.balance_interval_s (low-balance event)."""
    results = read_stale_accounts(get_deps())
    get_run_logger().info("balances: %s", results or "no provider configured")
    return results
