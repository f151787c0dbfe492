"""maintain-pool: keep idle, ready devices per host and profile, sized by demand (observe -> pure
size and plan -> act)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import BaseModel

from provisioner.pool import plan_pool
from provisioner.pool.run import pool_table, targets_for
from provisioner.prefect_api.artifacts import publish_table
from provisioner.steps.deps import get_deps
from provisioner.store.locks import advisory_lock
from tasks.pool import act_pool_task, observe_demand_task, observe_pool_task, read_balances_task


class PoolSummary(BaseModel):
    ran: bool
    message: str
    wanted: dict[str, int]
    actions: list[dict[str, str]]
    failed: int = 0


@flow(
    name="maintain-pool",
    description="Keep the warm pool: idle, ready devices per host and profile, sized by demand.",
)
def maintain_pool(dry_run: bool = False) -> PoolSummary:
    logger = get_run_logger()
    deps = get_deps()
    if not dry_run:
        read_balances_task()
    with advisory_lock(deps.sessions, f"provisioner-pool-{deps.settings.instance_id}") as got:
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
    publish_table(
        f"pool-{deps.settings.instance_id}",
        pool_table(deps) or [{"device": "-", "state": "no live devices"}],
        description=f"Warm pool after this pass (wanted idle: {wanted or 'none'})",
    )
    message = (
        f"{len(rows)} action(s){' planned' if dry_run else ''}, {failed} failed; wanted {wanted or 'none'}"
    )
    logger.info(message)
    return PoolSummary(ran=True, message=message, wanted=wanted, actions=rows, failed=failed)
