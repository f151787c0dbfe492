"""`provisioner executor`: a long-lived process that runs the provision flow runs of its work pool
in threads, one per run, instead of a `python -m prefect.engine` process per run.

Every ``poll_s`` it reads the pool's due runs and claims each it has room for (``limit`` at once)
by proposing Pending, as Prefect's workers do: two executors never run the same run. A claimed run
is an ordinary Prefect flow run (state, logs, heartbeats, artifacts), executed by Prefect's flow
engine in a thread. A killed executor's runs stop beating: Prefect's heartbeat automations mark them
Crashed and reconciliation re-runs or undoes their sessions, as for a dead worker's.

What the runs share in this process (settings, the database engine, Docker and provider clients in
steps.deps.get_deps) is built once before the first run and is safe across threads.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from uuid import UUID

from prefect import Flow

from provisioner.prefect_api.executor import claim, execute, flow_name, scheduled_runs, worker_heartbeat
from provisioner.prefect_api.names import EXECUTOR_POOL

log = logging.getLogger(__name__)

POLL_S = 0.5
HEARTBEAT_S = 30.0  # the worker heartbeat Prefect shows in the pool's Workers tab


class Executor:
    def __init__(
        self,
        flows: Mapping[str, Flow],
        *,
        pool: str = EXECUTOR_POOL,
        limit: int = 100,
        poll_s: float = POLL_S,
        name: str | None = None,
    ) -> None:
        """``flows``: the flows it runs, by flow name; a run of another flow is left to others."""
        self.flows, self.pool, self.limit, self.poll_s = dict(flows), pool, limit, poll_s
        self.name = name or f"executor-{socket.gethostname()}-{threading.get_native_id()}"
        self._flow_names: dict[UUID, str] = {}
        self._running: dict[UUID, threading.Thread] = {}
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def serve(self, stop: threading.Event) -> None:
        """Claim and start runs until ``stop`` is set, then wait for the runs started to end."""
        beat_at = 0.0
        while not stop.is_set():
            if time.monotonic() >= beat_at:
                try:
                    worker_heartbeat(self.pool, self.name, HEARTBEAT_S)
                    beat_at = time.monotonic() + HEARTBEAT_S
                except Exception as exc:  # the API is down: keep polling, it comes back
                    log.warning("worker heartbeat failed: %s: %s", type(exc).__name__, exc)
            try:
                self.poll_once()
            except Exception as exc:
                log.warning("reading pool %s failed: %s: %s", self.pool, type(exc).__name__, exc)
            stop.wait(self.poll_s)
        for thread in list(self._running.values()):
            thread.join()

    def poll_once(self) -> int:
        """Claim and start the due runs there is room for; how many were started."""
        started = 0
        if self.running >= self.limit:
            return 0
        for run in scheduled_runs(self.pool):
            if self.running >= self.limit:
                break
            flow = self._flow_of(run.flow_id)
            if flow is None or run.id in self._running or not claim(run):
                continue
            thread = threading.Thread(target=self._run, args=(flow, run), name=f"run-{run.id}", daemon=True)
            with self._lock:
                self._running[run.id] = thread
            thread.start()
            started += 1
        return started

    def _flow_of(self, flow_id: UUID) -> Flow | None:
        if flow_id not in self._flow_names:
            self._flow_names[flow_id] = flow_name(flow_id)
        return self.flows.get(self._flow_names[flow_id])

    def _run(self, flow: Flow, run) -> None:
        try:
            state = execute(flow, run)
            log.info("flow run %s (%s): %s", run.name, run.id, state.type.value)
        except Exception:  # outside the flow (the engine's own calls): the executor goes on
            log.exception("flow run %s ended with an exception outside the flow", run.id)
        finally:
            with self._lock:
                self._running.pop(run.id, None)
