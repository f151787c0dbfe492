"""maintain-pool: keep N idle, ready devices per host and profile (observe -> pure plan -> act)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from pydantic import BaseModel

from flows.reconcile import advisory_lock
from provisioner.pool import PoolObserved, plan_pool, wanted_per_profile
from provisioner.pool.run import PoolResult, act_pool, observe_pool, pool_table
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


@task(name="act-pool", cache_policy=NONE)
def act_pool_task(actions: list) -> list[PoolResult]:
    deps, logger = get_deps(), get_run_logger()
    results = act_pool(deps, actions, slot=launch_slot_for(deps, logger))
    for r in results:
        (logger.info if r.ok else logger.error)(
            "%s %s (%s): %s", r.action.kind, r.action.target, r.action.reason, r.result
        )
    return results


@flow(name="maintain-pool", description="Keep the warm pool: N idle, ready devices per host and profile.")
def maintain_pool(dry_run: bool = False) -> PoolSummary:
    logger = get_run_logger()
    deps = get_deps()
    wanted = wanted_per_profile(deps.runtime.profiles, deps.settings.pool.warm)
    with advisory_lock(f"provisioner-pool-{deps.settings.instance_id}") as got:
        if not got:
            message = "another maintain-pool pass holds the lock; this one does nothing"
            logger.warning(message)
            return PoolSummary(ran=False, message=message, wanted=wanted, actions=[])
        observed = observe_pool_task()
        actions = plan_pool(observed, wanted, deps.runtime.profiles, deps.settings.pool.capacity)
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
