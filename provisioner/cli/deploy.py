"""`provisioner deploy`: the work pool, the deployments of prefect.yaml and the automations, each
created idempotently on the Prefect API named by PREFECT_API_URL (compose's one-shot runs it).

Dead runs are Prefect's to detect: flow runs started by a deployment emit a heartbeat event every
PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (the worker's environment; Prefect's minimum is 30), and
the automation made here marks a run whose heartbeats stop for ``heartbeat_timeout_s`` as
`Crashed`. Crashed releases the run's deployment concurrency slot (the reconcile deployment's limit
of 1), runs its on_crashed hook where it still can, and tells reconciliation the run is dead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from provisioner.steps.launch import WORK_POOL, queue_name


def project_root() -> Path:
    """Where prefect.yaml is: the current directory (compose runs in /app; an installed package
    lives elsewhere), else this checkout."""
    here = Path.cwd()
    return here if (here / "prefect.yaml").exists() else Path(__file__).resolve().parents[2]


ZOMBIE_AUTOMATION = "provisioner: crash flow runs whose heartbeats stopped"
HEARTBEAT_FREQUENCY_S = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY for workers (Prefect's minimum)
HEARTBEAT_TIMEOUT_S = 90  # three missed heartbeats


class DeployError(RuntimeError):
    pass


@dataclass(frozen=True)
class DeployReport:
    work_pool: str  # "created" | "exists"
    deployments: str  # prefect deploy's last line
    automation: str  # "created" | "updated"
    host_queues: str = ""  # the hosts' work queues: "host-a (created), host-b (exists)" or why not


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


def ensure_host_queues() -> str:
    """The work queue host-<name> of every host in the hosts table (none without hosts)."""
    from sqlalchemy.exc import SQLAlchemyError

    from provisioner.settings import SettingsError, get_settings
    from provisioner.store import get_sessionmaker
    from provisioner.store import hosts as hostrepo

    try:
        get_settings()
        with get_sessionmaker()() as db:
            names = [h.name for h in hostrepo.list_hosts(db)]
    except (SettingsError, SQLAlchemyError) as exc:
        return f"not read ({type(exc).__name__}): run `provisioner deploy` again with the database reachable"
    if not names:
        return "none (no hosts)"
    return ", ".join(f"{queue_name(n)} ({ensure_work_queue(queue_name(n))})" for n in names)


def deploy_prefect_yaml(root: Path) -> str:
    """`prefect --no-prompt deploy --all` from the project root: the pull step records $PWD as the
    flows' working directory. Re-running it updates the deployments in place."""
    prefect = Path(sys.executable).with_name("prefect")
    env = {**os.environ, "PWD": str(root)}
    done = subprocess.run(
        [str(prefect) if prefect.exists() else "prefect", "--no-prompt", "deploy", "--all"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise DeployError("prefect deploy --all failed:\n" + "\n".join(tail))
    with get_client(sync_client=True) as client:
        names = sorted(f"{d.name}" for d in client.read_deployments())
    return ", ".join(names)


def zombie_automation(heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S) -> Automation:
    """Prefect's recipe for zombie flow runs: a run that sent a heartbeat and then, within the
    timeout, neither another heartbeat nor a final state, is set Crashed."""
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description="Marks provisioner flow runs Crashed when their heartbeats stop (process killed, "
        "machine lost); reconciliation then ends or re-submits their sessions.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=heartbeat_timeout_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {heartbeat_timeout_s:g} s: the flow run's process is gone",
            )
        ],
    )


def ensure_zombie_automation(heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S) -> str:
    wanted = zombie_automation(heartbeat_timeout_s)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        if not existing:
            wanted.create()
            return "created"
        keep, *extra = existing
        for duplicate in extra:  # two concurrent deploys may both have created one
            client.delete_automation(duplicate.id)
        client.update_automation(keep.id, wanted)
        return "updated"


def deploy(*, heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S, root: Path | None = None) -> DeployReport:
    return DeployReport(
        work_pool=ensure_work_pool(),
        deployments=deploy_prefect_yaml(root or project_root()),
        automation=ensure_zombie_automation(heartbeat_timeout_s),
        host_queues=ensure_host_queues(),
    )
