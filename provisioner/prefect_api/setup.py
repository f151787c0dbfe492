"""What `provisioner deploy` makes on Prefect's API, each idempotently: the work pool, the hosts'
work queues, the two dead-run automations; and the deployments registered there.

Dead runs are Prefect's to detect: flow runs started by a deployment emit a heartbeat event every
PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (the worker's environment; Prefect's minimum is 30), and
the automations made here mark `Crashed` a run whose heartbeats stop for ``heartbeat_timeout_s``,
and one of our deployments' runs that entered Running and sent no heartbeat within it (its process
died before its first beat reached the server). Crashed releases the run's deployment concurrency
slot (the reconcile deployment's limit of 1), runs its on_crashed hook where it still can, and
tells reconciliation the run is dead.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, DoNothing
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from provisioner.prefect_api.events import LOW_BALANCE_EVENT
from provisioner.prefect_api.names import WORK_POOL

ZOMBIE_AUTOMATION = "provisioner: crash flow runs whose heartbeats stopped"
SILENT_AUTOMATION = "provisioner: crash flow runs that never sent a heartbeat"
DEPLOYMENT_TAG = "provisioner"  # prefect.yaml's deployment_defaults: every run of ours carries it
LOW_BALANCE_AUTOMATION = "provisioner: provider balance low (example)"
HEARTBEAT_FREQUENCY_S = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY for workers (Prefect's minimum)
HEARTBEAT_TIMEOUT_S = 90  # three missed heartbeats


def ensure_work_pool(name: str = WORK_POOL) -> str:
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return "exists"
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"), overwrite=False)
            return "created"


def ensure_work_queue(name: str, pool: str = WORK_POOL) -> str:
    """The work queue ``name`` in the pool (a host's launch queue, host-<name>); idempotent."""
    with get_client(sync_client=True) as client:
        try:
            client.create_work_queue(
                name=name,
                work_pool_name=pool,
                description="Device launches on one Docker host: its own worker serves it",
            )
            return "created"
        except ObjectAlreadyExists:
            return "exists"


def deployment_names() -> list[str]:
    """The deployments registered on the API, sorted."""
    with get_client(sync_client=True) as client:
        return sorted(f"{d.name}" for d in client.read_deployments())


# Events that show a run is alive (a heartbeat) or has ended: both automations expect one of them.
ALIVE_OR_ENDED = frozenset(
    {
        "prefect.flow-run.heartbeat",
        "prefect.flow-run.Completed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed",
    }
)


def _dead_run_automation(
    name: str,
    description: str,
    *,
    after: str,
    message: str,
    heartbeat_timeout_s: float,
    match_related: ResourceSpecification | None = None,
) -> Automation:
    """Prefect's recipe for zombie flow runs: a run that saw ``after`` and then, within the
    timeout, neither a heartbeat nor a final state, is set Crashed with ``message``."""
    return Automation(
        name=name,
        description=description,
        trigger=EventTrigger(
            after={after},
            expect=ALIVE_OR_ENDED,
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=match_related or ResourceSpecification({}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=heartbeat_timeout_s),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=message)],
    )


def zombie_automation(heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S) -> Automation:
    """A run that sent a heartbeat and then went silent is set Crashed."""
    return _dead_run_automation(
        ZOMBIE_AUTOMATION,
        "Marks provisioner flow runs Crashed when their heartbeats stop (process killed, "
        "machine lost); reconciliation then ends or re-submits their sessions.",
        after="prefect.flow-run.heartbeat",
        message=f"no heartbeat for {heartbeat_timeout_s:g} s: the flow run's process is gone",
        heartbeat_timeout_s=heartbeat_timeout_s,
    )


def silent_start_automation(heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S) -> Automation:
    """The same recipe from a run entering Running: one of our runs that sends no heartbeat (and
    does not end) within the timeout after it, is set Crashed. Only runs tagged as ours: a flow run
    made in a process without heartbeats (another project's, a local test) is left alone."""
    return _dead_run_automation(
        SILENT_AUTOMATION,
        "Marks provisioner flow runs Crashed when they entered Running and never sent a "
        "heartbeat (process killed before its first beat); reconciliation then ends or re-submits "
        "their sessions.",
        after="prefect.flow-run.Running",
        message=f"no heartbeat within {heartbeat_timeout_s:g} s of entering Running: the flow "
        "run's process is gone",
        heartbeat_timeout_s=heartbeat_timeout_s,
        match_related=ResourceSpecification(
            {"prefect.resource.id": f"prefect.tag.{DEPLOYMENT_TAG}", "prefect.resource.role": "tag"}
        ),
    )


def ensure_automation(wanted: Automation) -> str:
    """Create ``wanted``, or update the automation of its name to it (one left of any duplicates)."""
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(wanted.name)
        if not existing:
            wanted.create()
            return "created"
        keep, *extra = existing
        for duplicate in extra:  # two concurrent deploys may both have created one
            client.delete_automation(duplicate.id)
        client.update_automation(keep.id, wanted)
        return "updated"


def ensure_zombie_automations(heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S) -> str:
    """Both dead-run automations; e.g. "created, created" on a new server, "updated, updated" after."""
    wanted = [zombie_automation(heartbeat_timeout_s), silent_start_automation(heartbeat_timeout_s)]
    return ", ".join(ensure_automation(automation) for automation in wanted)


def low_balance_automation() -> Automation:
    """An example for the low-balance event (steps.accounts), created disabled: the operator
    replaces its action (a notification block, a webhook) and enables it."""
    return Automation(
        name=LOW_BALANCE_AUTOMATION,
        description="Example, disabled: fires once each time a provider balance goes below "
        "PROVISIONER_SPEND__LOW_BALANCE. Replace its action with a notification, then enable it.",
        enabled=False,
        trigger=EventTrigger(
            expect={LOW_BALANCE_EVENT},
            match=ResourceSpecification({"prefect.resource.id": ["provisioner.provider.*"]}),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[DoNothing()],
    )


def ensure_low_balance_automation() -> str:
    """Created once; an existing one is the operator's to edit and is left as it is."""
    with get_client(sync_client=True) as client:
        if client.read_automations_by_name(LOW_BALANCE_AUTOMATION):
            return "exists"
    low_balance_automation().create()
    return "created (disabled)"


def api_failure() -> BaseException | None:
    """None when the Prefect API answers its health check, else what went wrong."""
    with get_client(sync_client=True) as client:
        return client.api_healthcheck()


def missing_deployments(names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` (flow/deployment) not registered on the API."""
    missing = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_deployment_by_name(name)
            except ObjectNotFound:
                missing.append(name)
    return missing


def zombie_automation_exists() -> bool:
    """Whether both dead-run automations are there."""
    with get_client(sync_client=True) as client:
        return all(client.read_automations_by_name(name) for name in (ZOMBIE_AUTOMATION, SILENT_AUTOMATION))


def pool_workers(pool: str = WORK_POOL) -> list | None:
    """The workers of work pool ``pool`` (None: the pool does not exist)."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_workers_for_work_pool(work_pool_name=pool)
        except ObjectNotFound:
            return None
