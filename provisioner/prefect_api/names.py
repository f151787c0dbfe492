"""Names registered in Prefect: deployments (``flow/deployment``, from prefect.yaml), the work pool
and the hosts' work queues."""

from __future__ import annotations

PROVISION_DEPLOYMENT = "provision/provision"
RELEASE_DEPLOYMENT = "release/release"
LAUNCH_DEPLOYMENT = "launch-device/launch-device"
RECONCILE_DEPLOYMENT = "reconcile/reconcile"
POOL_DEPLOYMENT = "maintain-pool/maintain-pool"
DEPLOYMENTS = (
    PROVISION_DEPLOYMENT,
    RELEASE_DEPLOYMENT,
    RECONCILE_DEPLOYMENT,
    POOL_DEPLOYMENT,
    LAUNCH_DEPLOYMENT,
)  # every deployment of prefect.yaml
WORK_POOL = "provisioner-process"


def queue_name(host: str) -> str:
    """A Docker host's work queue: its own worker serves the host's device launches."""
    return f"host-{host}"


def worker_command(host: str) -> str:
    return f"DOCKER_HOST=<{host}'s engine> prefect worker start --pool {WORK_POOL} --work-queue {queue_name(host)}"
