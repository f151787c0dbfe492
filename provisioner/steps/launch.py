"""Where a device's launch runs: here, or on its host's Prefect work queue ``host-<name>``.

Over several Docker hosts (the hosts table has rows) a flow run started from a deployment does not
start a device's containers itself: it records the device (placed on a host, steps.devices)
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
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from provisioner.prefect_api.limits import ensure_limit, hold_slot
from provisioner.prefect_api.names import queue_name, worker_command
from provisioner.prefect_api.runs import cancel_run, in_deployment_run, run_launch
from provisioner.runtime.containers import STREAM_READY_S
from provisioner.steps.deps import Deps
from provisioner.steps.devices import Device, LaunchSlot, retire_device, start_device
from provisioner.store import DeviceState
from provisioner.store import devices as devrepo

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

log = logging.getLogger(__name__)

POLL_S = 1.0
LAUNCH_LEASE_S = 60  # the shortest lease Prefect's API accepts


class LaunchFailed(RuntimeError):
    """A device's launch on its host's work queue did not end ready (the device was retired)."""


def launches_on_queues(deps: Deps) -> bool:
    """Whether launches go to the hosts' work queues: over several hosts, with
    PROVISIONER_HOSTS__DISPATCH=queue, from a flow run of a deployment (workers serve those)."""
    if deps.settings.hosts.dispatch != "queue" or not deps.hosts.queues:
        return False
    return in_deployment_run()


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
        run = run_launch(device_id, reason=reason, host=host, queue=queue, wait_s=wait_s, poll_s=POLL_S)
        problem = _problem(run, queue, device_id, wait_s)
    except Exception as exc:  # the deployment is missing, the API does not answer, ...
        problem = f"the launch of device {device_id} on work queue {queue} could not be run: {type(exc).__name__}: {exc}"
    if problem is None:
        return
    if run is not None and cancel_run(run.id, problem) == "COMPLETED":  # it finished just now
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


# -- on the host: the worker's own engine, and the host's launch limit ------------------------------


def start_on_this_host(deps: Deps, device_id: str, *, slot: LaunchSlot | None, reason: str) -> Device:
    """The launch-device run's work: start the recorded device on this worker's engine (see
    Runtime.this_engine_as); a worker on the wrong engine retires the device (failed) and raises."""
    with deps.sessions() as db:
        row = devrepo.get_device(db, device_id)
        host, state = row.host, row.state
    if state != DeviceState.BOOTING.value:  # its caller gave up on it meanwhile
        raise LaunchFailed(f"device {device_id} is {state}: nothing to launch")
    try:
        runtime = deps.runtime.this_engine_as(host)
    except BaseException as exc:
        retire_device(deps, device_id, reason=f"boot failed: {type(exc).__name__}: {exc}", failed=True)
        raise
    return start_device(deps, device_id, runtime=runtime, slot=slot, reason=reason)


def launch_limit_name(deps: Deps, host: str) -> str:
    """The Prefect global concurrency limit gating launches on a host: one per host of the hosts
    table, one for the single engine otherwise."""
    return deps.hosts.limit_name(f"provisioner-launch-{deps.settings.instance_id}", host)


def ensure_launch_limit(deps: Deps, host: str) -> str:
    """Create or resize the host's launch limit (PROVISIONER_DOCKER__LAUNCH_SLOTS slots)."""
    name = launch_limit_name(deps, host)
    ensure_limit(name, deps.settings.docker.launch_slots)
    return name


def launch_slot_for(deps: Deps, logger: logging.Logger | logging.LoggerAdapter):  # noqa: ANN201
    """A LaunchSlot (steps.devices): host -> hold one slot of its launch limit. A burst of
    launches queues there, and says so; a short lease, renewed while the launch runs, so a killed
    holder's slot goes back within LAUNCH_LEASE_S plus a pass of the server's lease repossessor."""

    @contextlib.contextmanager
    def slot(host: str) -> Iterator[None]:
        name = ensure_launch_limit(deps, host)
        logger.info("waiting for a launch slot on %s (%d slots)", name, deps.settings.docker.launch_slots)
        started = time.monotonic()
        with hold_slot(name, lease_s=LAUNCH_LEASE_S):
            logger.info("got a launch slot after %.1f s", time.monotonic() - started)
            yield

    return slot
