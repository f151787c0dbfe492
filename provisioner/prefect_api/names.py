"""Names registered in Prefect: deployments (``flow/deployment``, from prefect.yaml), the work pool
and the hosts' work queues."""

from __future__ import annotations

PROVISION_DEPLOYMENT = "provision/provision"  # on the process pool: the UI form's, a process per run
PROVISION_EXECUTOR_DEPLOYMENT = "provision/executor"  # on the executor pool: a thread per run
RELEASE_DEPLOYMENT = "release/release"
LAUNCH_DEPLOYMENT = "launch-device/launch-device"
RECONCILE_DEPLOYMENT = "reconcile/reconcile"
POOL_DEPLOYMENT = "maintain-pool/maintain-pool"
DEPLOYMENTS = (
    PROVISION_DEPLOYMENT,
    PROVISION_EXECUTOR_DEPLOYMENT,
    RELEASE_DEPLOYMENT,
    RECONCILE_DEPLOYMENT,
    POOL_DEPLOYMENT,
    LAUNCH_DEPLOYMENT,
)  # every deployment of prefect.yaml
WORK_POOL = "provisioner-process"
EXECUTOR_POOL = "provisioner-executor"  # served by `provisioner executor`, never by a Prefect worker


def provision_deployment(run_on: str) -> str:
    """The provision deployment API-triggered runs go to: ``executor`` or ``worker``."""
    return PROVISION_EXECUTOR_DEPLOYMENT if run_on == "executor" else PROVISION_DEPLOYMENT


def queue_name(host: str) -> str:
    """A Docker host's work queue: its own worker serves the host's device launches."""
    return f"host-{host}"


def worker_command(host: str) -> str:
    return f"DOCKER_HOST=<{host}'s engine> prefect worker start --pool {WORK_POOL} --work-queue {queue_name(host)}"
