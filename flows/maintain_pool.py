"""maintain-pool: keep idle, ready devices per host and profile, sized by demand (observe -> pure
size and plan -> act)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from pydantic import BaseModel

from flows.reconcile import advisory_lock
from provisioner.pool import Demand, PoolObserved, plan_pool
from provisioner.pool.run import PoolResult, act_pool, observe_demand, observe_pool, pool_table, targets_for
from provisioner.steps.deps import get_deps
from provisioner.steps.launch import launch_slot_for


class PoolSummary(BaseModel):
    ran: bool
    message: str
    wanted: dict[str, int]
    actions: list[dict[str, str]]
    failed: int = 0


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


@flow(
    name="maintain-pool",
    description="Keep the warm pool: idle, ready devices per host and profile, sized by demand.",
)
def maintain_pool(dry_run: bool = False) -> PoolSummary:
    logger = get_run_logger()
    deps = get_deps()
    with advisory_lock(f"provisioner-pool-{deps.settings.instance_id}") as got:
        if not got:
            message = "another maintain-pool pass holds the lock; this one does nothing"
            logger.warning(message)
            return PoolSummary(ran=False, message=message, wanted={}, actions=[])
        observed = observe_pool_task()
        targets = targets_for(deps, observe_demand_task(), len(observed.hosts))
        for profile, target in targets.items():
            logger.info("%s: %s", profile, target.reason)
        wanted = {profile: t.wanted for profile, t in targets.items() if t.wanted > 0}
        pool = deps.settings.pool
        actions = plan_pool(observed, wanted, deps.runtime.profiles, pool.capacity, pool.cool_down_s)
        if dry_run:
            rows = [
                {"action": a.kind.value, "target": a.target, "reason": a.reason, "result": "dry run"}
                for a in actions
            ]
            failed = 0
        else:
            results = act_pool_task(actions)
            rows = [
                {
                    "action": r.action.kind.value,
                    "target": r.action.target,
                    "reason": r.action.reason,
                    "result": r.result,
                }
                for r in results
            ]
            failed = sum(not r.ok for r in results)
    create_table_artifact(
        table=pool_table(deps) or [{"device": "-", "state": "no live devices"}],
        key=f"pool-{deps.settings.instance_id}",
        description=f"Warm pool after this pass (wanted idle: {wanted or 'none'})",
    )
    message = (
        f"{len(rows)} action(s){' planned' if dry_run else ''}, {failed} failed; wanted {wanted or 'none'}"
    )
    logger.info(message)
    return PoolSummary(ran=True, message=message, wanted=wanted, actions=rows, failed=failed)
