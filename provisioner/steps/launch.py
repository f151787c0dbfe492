"""Where a device's launch runs: here, or on its host's Prefect work queue ``host-<name>``.

Over several Docker hosts (the hosts table has rows) a flow run started from a deployment does not
start a device's containers itself: it records the device (placed on a host, provisioning.devices)
and creates a run of the ``launch-device/launch-device`` deployment on the host's work queue. The
process worker on that host (its local engine as DOCKER_HOST) picks it up and starts the containers
there (``flows/launch_device.py``); the caller waits for that run's final state, reading it every
POLL_S (run_deployment's poll), and stops at the first final one: a run Crashed (its worker died:
the heartbeat automation of ``provisioner deploy``), Failed or Cancelled retires the device at once,
not at the deadline. A run nobody picks up, or that does not finish in time, is cancelled and the
device retired (failed, containers removed); the error names the queue and the run's state. PROVISIONER_HOSTS__DISPATCH=process (and any direct flow
call: tests, scripts) launches in the calling process over the host's Docker URL instead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import deployment
from prefect.states import Cancelled, Cancelling

from provisioner.runtime import ContainerRuntime
from provisioner.runtime.containers import STREAM_READY_S
from provisioner.runtime.errors import RuntimeFailure, translate_docker_errors
from provisioner.steps.deps import Deps
from provisioner.steps.devices import Device, LaunchSlot, retire_device, start_device
from provisioner.steps.hosts import HostsRuntime, hosts_mode
from provisioner.store import DeviceState
from provisioner.store import devices as devrepo
from provisioner.store import hosts as hostrepo

log = logging.getLogger(__name__)

WORK_POOL = "provisioner-process"
LAUNCH_DEPLOYMENT = "launch-device/launch-device"
POLL_S = 1.0
LAUNCH_LEASE_S = 60  # the shortest lease Prefect's API accepts


class LaunchFailed(RuntimeError):
    """A device's launch on its host's work queue did not end ready (the device was retired)."""


class WrongEngine(RuntimeFailure):
    """A launch-device run was picked up by a worker whose engine is not the device's host's."""


def queue_name(host: str) -> str:
    return f"host-{host}"


def worker_command(host: str) -> str:
    return f"DOCKER_HOST=<{host}'s engine> prefect worker start --pool {WORK_POOL} --work-queue {queue_name(host)}"


def launches_on_queues(deps: Deps) -> bool:
    """Whether launches go to the hosts' work queues: over several hosts, with
    PROVISIONER_HOSTS__DISPATCH=queue, from a flow run of a deployment (workers serve those)."""
    if deps.settings.hosts.dispatch != "queue" or not hosts_mode(deps):
        return False
    return deployment.id is not None


def launch_wait_s(deps: Deps, profile: str) -> float:
    """How long a caller waits for a launch run: the worker's start margin, then the device's and
    the stream's readiness deadlines."""
    override = deps.settings.docker.readiness_timeout_s
    device_s = override if override is not None else deps.runtime.profile(profile).boot_timeout_s
    stream_s = override if override is not None else STREAM_READY_S
    return deps.settings.hosts.launch_start_s + device_s + stream_s


def launch_on_queue(deps: Deps, device_id: str, *, host: str, profile: str, reason: str) -> None:
    """Run the recorded device's launch on work queue host-<host> and wait for its final state;
    any other end than Completed cancels the run, retires the device and raises LaunchFailed."""
    queue = queue_name(host)
    wait_s = launch_wait_s(deps, profile)
    run: FlowRun | None = None
    try:
        run = run_deployment(
            LAUNCH_DEPLOYMENT,
            parameters={"device_id": device_id, "reason": reason},
            flow_run_name=f"launch-{device_id}",
            work_queue_name=queue,
            timeout=wait_s,
            poll_interval=POLL_S,
            idempotency_key=f"launch:{device_id}",
            tags=["provisioner", f"host:{host}", f"device:{device_id}"],
            as_subflow=False,
        )
        problem = _problem(run, queue, device_id, wait_s)
    except Exception as exc:  # the deployment is missing, the API does not answer, ...
        problem = f"the launch of device {device_id} on work queue {queue} could not be run: {type(exc).__name__}: {exc}"
    if problem is None:
        return
    if run is not None and _cancel(run.id, problem) == "COMPLETED":  # it finished just now
        return
    log.error("%s", problem)
    retire_device(deps, device_id, reason=problem[:2000], failed=True)
    raise LaunchFailed(problem)


def _problem(run: FlowRun, queue: str, device_id: str, wait_s: float) -> str | None:
    """None when the launch run completed, else what went wrong, naming the queue."""
    state = run.state
    if state is not None and state.is_completed():
        return None
    launch = f"the launch of device {device_id} on work queue {queue}"
    if state is None or state.is_scheduled():  # Scheduled or Late: no worker took it
        return (
            f"no worker picked up the launch of device {device_id} on work queue {queue} within {wait_s:.0f} s (start one on "
            f"that host: {worker_command(queue.removeprefix('host-'))})"
        )
    if not state.is_final():
        return f"{launch} did not finish within {wait_s:.0f} s (it is {state.name})"
    return f"{launch} ended {state.name}" + (f": {state.message}" if state.message else "")


def _cancel(run_id: UUID, message: str) -> str:
    """Stop a launch run that is not final (a started one through its worker: Cancelling);
    returns the state type it ended in or had."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        state = run.state
        if state is not None and state.is_final():
            return state.type.value
        started = state is not None and (state.is_running() or state.is_pending())
        client.set_flow_run_state(
            run_id, (Cancelling if started else Cancelled)(message=message[:500]), force=True
        )
        return "CANCELLING" if started else "CANCELLED"


# -- on the host: the worker's own engine, and the host's launch limit ------------------------------


def host_runtime(deps: Deps, host: str) -> ContainerRuntime:
    """This worker's own engine (PROVISIONER_DOCKER__HOST, else DOCKER_HOST), publishing streams
    on the host's stream address. Refuses (WrongEngine) when that engine is not the one the hosts
    table names for ``host`` (engine ID, host name and data root differ): a worker serving another
    host's queue must not launch there."""
    with deps.sessions() as db:
        row = hostrepo.get_host(db, host)
    local = ContainerRuntime.from_settings(deps.settings)
    local.publish_host = row.stream_address
    runtime = deps.runtime
    if isinstance(runtime, HostsRuntime) and _identity(local.client) != _identity(
        runtime.runtimes.client(runtime.runtimes.engine(row))
    ):
        raise WrongEngine(
            f"this worker's Docker engine is not host {host}'s ({row.docker_url}): start the worker "
            f"of work queue {queue_name(host)} on that host with its engine as DOCKER_HOST"
        )
    return local


def start_on_this_host(deps: Deps, device_id: str, *, slot: LaunchSlot | None, reason: str) -> Device:
    """The launch-device run's work: start the recorded device on this worker's engine (see
    host_runtime); a worker on the wrong engine retires the device (failed) and raises."""
    with deps.sessions() as db:
        row = devrepo.get_device(db, device_id)
        host, state = row.host, row.state
    if state != DeviceState.BOOTING.value:  # its caller gave up on it meanwhile
        raise LaunchFailed(f"device {device_id} is {state}: nothing to launch")
    try:
        runtime = host_runtime(deps, host)
    except BaseException as exc:
        retire_device(deps, device_id, reason=f"boot failed: {type(exc).__name__}: {exc}", failed=True)
        raise
    return start_device(deps, device_id, runtime=runtime, slot=slot, reason=reason)


def _identity(client) -> tuple[str, str, str]:  # noqa: ANN001 - a docker.DockerClient
    """Which engine a client talks to: engines on one machine share the daemon key's ID and the
    host name, so the data root tells them apart."""
    with translate_docker_errors():
        info = client.info()
    return info.get("ID", ""), info.get("Name", ""), info.get("DockerRootDir", "")


def launch_limit_name(deps: Deps, host: str) -> str:
    """The Prefect global concurrency limit gating launches on a host: one per host over several
    hosts, one for the single engine otherwise (its name predates hosts)."""
    instance = deps.settings.instance_id
    return f"provisioner-launch-{instance}-{host}" if hosts_mode(deps) else f"provisioner-launch-{instance}"


@functools.cache
def _ensure_limit(name: str, slots: int, api_url: str | None) -> None:
    """Once per process and Prefect API. Not atomic in Prefect: a concurrent creator may win."""
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, slots)


def ensure_launch_limit(deps: Deps, host: str) -> str:
    """Create or resize the host's launch limit (PROVISIONER_DOCKER__LAUNCH_SLOTS slots)."""
    from prefect.settings import PREFECT_API_URL

    name = launch_limit_name(deps, host)
    _ensure_limit(name, deps.settings.docker.launch_slots, PREFECT_API_URL.value())
    return name


def launch_slot_for(deps: Deps, logger: logging.Logger | logging.LoggerAdapter):  # noqa: ANN201
    """A LaunchSlot (provisioning.devices): host -> hold one slot of its launch limit. A burst of
    launches queues there, and says so; a short lease, renewed while the launch runs, so a killed
    holder's slot goes back within LAUNCH_LEASE_S plus a pass of the server's lease repossessor."""
    from prefect.concurrency.sync import concurrency

    @contextlib.contextmanager
    def slot(host: str) -> Iterator[None]:
        name = ensure_launch_limit(deps, host)
        logger.info("waiting for a launch slot on %s (%d slots)", name, deps.settings.docker.launch_slots)
        started = time.monotonic()
        with concurrency(name, occupy=1, lease_duration=LAUNCH_LEASE_S):
            logger.info("got a launch slot after %.1f s", time.monotonic() - started)
            yield

    return slot
