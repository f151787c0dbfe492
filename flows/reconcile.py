"""reconcile: compare the database with Docker and the providers and repair the difference."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel

from provisioner.prefect_api.artifacts import publish_table
from provisioner.reconciler import Policy, plan
from provisioner.settings.version import VERSION
from provisioner.steps.deps import get_deps
from provisioner.store import leases as lease_repo
from provisioner.store.locks import advisory_lock
from provisioner.store.reconcile_counts import add_pass_counts
from tasks.catalogs import refresh_catalogs
from tasks.reconcile import act_on, observe_world


class ReconcileSummary(BaseModel):
    ran: bool
    dry_run: bool
    message: str
    actions: list[dict[str, str]]
    failed: int = 0
    catalogs: dict[str, str] = {}  # provider -> catalog refresh result (fresh, refreshed, failed)
    # Leases automation gave up on or cannot settle: a person checks the provider account.
    needs_attention: list[dict[str, str]] = []


@flow(
    name="reconcile",
    description="Heal streams, retire orphaned sessions, remove leaked containers, close leaked numbers, "
    "refresh stale provider catalogs.",
)
def reconcile_sessions(dry_run: bool = False) -> ReconcileSummary:
    logger = get_run_logger()
    logger.info("provisioner %s", VERSION)
    deps = get_deps()
    actor = f"reconcile:{flow_run.id}" if flow_run.id else "reconcile:local"
    with advisory_lock(deps.sessions, f"provisioner-reconcile-{deps.settings.instance_id}") as got:
        if not got:
            message = "another reconcile pass holds the lock; this one does nothing"
            logger.warning(message)
            return ReconcileSummary(ran=False, dry_run=dry_run, message=message, actions=[])
        observed = observe_world()
        config = deps.settings.reconcile
        policy = Policy(
            grace=timedelta(seconds=config.grace_s),
            provisioning_deadline=timedelta(seconds=config.provisioning_deadline_s),
            stale_after=timedelta(seconds=config.stale_after_s),
            device_grace=timedelta(seconds=config.device_grace_s),
            run_start_deadline=timedelta(seconds=config.run_start_deadline_s),
            run_pending_deadline=timedelta(seconds=config.run_pending_deadline_s),
            unhealthy_grace=timedelta(seconds=config.unhealthy_grace_s),
        )
        actions = plan(observed, policy)
        if dry_run:
            rows = [
                {"action": a.kind.value, "target": a.target, "reason": str(a.reason), "result": "dry run"}
                for a in actions
            ]
            failed = 0
            catalogs = {}
        else:
            results = act_on(actions, actor=actor)
            rows = [
                {
                    "action": r.action.kind.value,
                    "target": r.action.target,
                    "reason": str(r.action.reason),
                    "result": r.result,
                }
                for r in results
            ]
            failed = sum(not r.ok for r in results)
            with deps.sessions.begin() as db:  # for GET /metrics
                add_pass_counts(db, ((r.action.kind.value, r.ok) for r in results))
            catalogs = refresh_catalogs()
    message = (
        f"{len(rows)} action(s){' planned' if dry_run else ''}, {failed} failed" if rows else "nothing to do"
    )
    attention = attention_rows()
    if attention:
        message += f"; {len(attention)} number(s) need a person"
        logger.warning("%d number(s) need a person: %s", len(attention), attention)
    # Every pass leaves its table, an empty pass included, so the UI shows when the last one ran;
    # numbers needing a person are listed in it on every pass until someone settles them.
    table = rows or [{"action": "none", "target": "-", "reason": "nothing to do", "result": "-"}]
    publish_table(
        f"reconcile-{deps.settings.instance_id}",
        table + attention,
        description=f"Reconcile pass{' (dry run)' if dry_run else ''}: {message}",
    )
    logger.info(message)
    return ReconcileSummary(
        ran=True,
        dry_run=dry_run,
        message=message,
        actions=rows,
        failed=failed,
        catalogs=catalogs,
        needs_attention=attention,
    )


def attention_rows() -> list[dict[str, str]]:
    """Leases needing a person, as artifact rows (the same columns as the actions)."""
    with get_deps().sessions() as db:
        return [
            {
                "action": "needs_attention",
                "target": f"lease {x.id} ({x.provider}, session {x.session_id})",
                "reason": x.attention or x.provider_status or "",
                "result": f"{x.outcome}: left for a person",
            }
            for x in lease_repo.leases_needing_attention(db)
        ]
