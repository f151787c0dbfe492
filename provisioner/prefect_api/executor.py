"""The Prefect calls of `provisioner executor`: read its work pool's scheduled flow runs, claim one
the way Prefect's workers do (propose Pending: the server refuses a second claim), run a claimed run
in this thread with Prefect's flow engine, and say the executor is alive (a worker heartbeat)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import Abort
from prefect.flow_engine import run_flow
from prefect.logging.loggers import flow_run_logger
from prefect.states import Pending, State
from prefect.utilities.engine import propose_state_sync

log = logging.getLogger(__name__)


def scheduled_runs(pool: str) -> list[FlowRun]:
    """The pool's flow runs due now, oldest first."""
    with get_client(sync_client=True) as client:
        due = client.get_scheduled_flow_runs_for_work_pool(pool, scheduled_before=datetime.now(UTC))
    return [response.flow_run for response in due]


def flow_name(flow_id: UUID) -> str:
    with get_client(sync_client=True) as client:
        return client.read_flow(flow_id).name


def claim(run: FlowRun) -> bool:
    """Propose Pending for a Scheduled run: True when this executor now holds it; False when the
    server refused (another executor or worker claimed it first, or it was cancelled)."""
    with get_client(sync_client=True) as client:
        try:
            state = propose_state_sync(client, Pending(), flow_run_id=run.id)
        except Abort as exc:
            log.info("flow run %s not claimed: %s", run.id, exc)
            return False
    return state.is_pending()


def execute(flow: Flow, run: FlowRun) -> State:
    """Run the claimed flow run in this thread to its final state (Prefect's engine proposes
    Running, sends the run's heartbeats and logs, and sets the final state)."""
    return run_flow(flow, flow_run=run, return_type="state", error_logger=flow_run_logger(run))


def worker_heartbeat(pool: str, name: str, interval_s: float) -> None:
    """Listed as a worker of ``pool`` (the UI's Workers tab, `provisioner doctor`) while it beats."""
    with get_client(sync_client=True) as client:
        client.send_worker_heartbeat(pool, name, heartbeat_interval_seconds=interval_s)
