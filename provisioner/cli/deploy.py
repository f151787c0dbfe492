"""`provisioner deploy`: the work pool, the deployments of prefect.yaml and the automations, each
created idempotently on the Prefect API named by PREFECT_API_URL (compose's one-shot runs it; the
API calls are in provisioner.prefect_api.setup).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from provisioner.prefect_api.names import EXECUTOR_POOL, queue_name
from provisioner.prefect_api.setup import (
    HEARTBEAT_TIMEOUT_S,
    deployment_names,
    ensure_low_balance_automation,
    ensure_work_pool,
    ensure_work_queue,
    ensure_zombie_automations,
)


def project_root() -> Path:
    """Where prefect.yaml is: the current directory (compose runs in /app; an installed package
    lives elsewhere), else this checkout."""
    here = Path.cwd()
    return here if (here / "prefect.yaml").exists() else Path(__file__).resolve().parents[2]


class DeployError(RuntimeError):
    pass


@dataclass(frozen=True)
class DeployReport:
    work_pool: str  # "created" | "exists"
    deployments: str  # prefect deploy's last line
    automation: str  # each automation's "created" | "updated"
    balance_automation: str = ""  # the low-balance example automation: created (disabled) | exists
    host_queues: str = ""  # the hosts' work queues: "host-a (created), host-b (exists)" or why not
    executor_pool: str = ""  # provisioner-executor: "created" | "exists"


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
    return ", ".join(deployment_names())


def deploy(*, heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S, root: Path | None = None) -> DeployReport:
    return DeployReport(
        work_pool=ensure_work_pool(),
        executor_pool=ensure_work_pool(EXECUTOR_POOL),  # before prefect deploy: its deployment names it
        deployments=deploy_prefect_yaml(root or project_root()),
        automation=ensure_zombie_automations(heartbeat_timeout_s),
        host_queues=ensure_host_queues(),
        balance_automation=ensure_low_balance_automation(),
    )
