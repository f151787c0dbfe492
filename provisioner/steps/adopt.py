"""Which session a provision flow run works on: a flow run owns at most one session.

    a session already records this flow run      -> that session (a Retry, a restarted crash)
    the gateway or reconciliation wrote it first -> adopted (session_id parameter), the run takes charge
      ... but it records another run still alive -> RunReplaced (reconciliation judged this run
                                                    dead and re-submitted the session; it started late)
    neither                                      -> created (a run from the UI form or the CLI)

An ended or releasing session is never worked on again (SessionEnded). A live one is resumed:
``attempt`` is the number attempt to continue from, so a resumed run reuses the number it bought
and never buys again for an attempt already made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from provisioner.steps.deps import Deps
from provisioner.steps.request import ResolvedRequest
from provisioner.store import LeaseOutcome, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.store.repository import SessionEnded
from provisioner.store.states import ENDING

# A number of the latest attempt in one of these may still receive its code: resume it.
_RESUMABLE = frozenset({LeaseOutcome.PENDING, LeaseOutcome.ACTIVE, LeaseOutcome.CODE_RECEIVED})


class RunReplaced(Exception):
    """Another flow run, still alive, is in charge of the session: this one does not touch it."""

    def __init__(self, session_id: str, run_id: str) -> None:
        self.session_id = session_id
        self.run_id = run_id
        super().__init__(f"session {session_id} is in the charge of flow run {run_id}; this run stops")

    def __reduce__(self):  # picklable, for Prefect's state results
        return (type(self), (self.session_id, self.run_id))


@dataclass(frozen=True)
class Adopted:
    session_id: str
    state: State
    attempt: int  # the number attempt to (re)start from
    resumed: bool  # the session existed before this run started working on it


def adopt_session(
    deps: Deps,
    *,
    session_id: str | None,
    flow_run_id: str,
    request: ResolvedRequest,
    actor: str,
    run_alive: Callable[[str], bool] = lambda run_id: False,
) -> Adopted:
    """The session ``flow_run_id`` works on (see the module docstring); a new one is created for
    ``request``. Raises SessionEnded when it has ended, RunReplaced when another run Prefect calls
    alive (``run_alive``: prefect_api.runs.run_alive) is in charge of it."""
    idle_timeout_s = request.idle_timeout_s
    with deps.sessions.begin() as db:
        row = repo.find_by_flow_run(db, flow_run_id) if flow_run_id != "None" else None
        if row is None and session_id:
            row = repo.find_session(db, session_id)
            if row is not None and row.flow_run_id not in (None, flow_run_id) and run_alive(row.flow_run_id):
                raise RunReplaced(row.id, row.flow_run_id)
        if row is None:
            row = repo.create_session(
                db,
                service=request.service,
                country=request.country,
                device_profile=request.device_profile,
                flow_run_id=flow_run_id,
                ttl=timedelta(seconds=request.ttl_s),
                actor=actor,
                session_id=session_id,
                idle_timeout_s=idle_timeout_s,
            )
            return Adopted(row.id, State(row.state), 1, False)
        if State(row.state) in ENDING:
            raise SessionEnded(row.id, row.state)
        repo.record_submission(db, row.id, flow_run_id)
        if row.idle_timeout_s is None and idle_timeout_s is not None:
            repo.update_session(db, row.id, idle_timeout_s=idle_timeout_s)
        leases = lease_repo.leases_for_session(db, row.id)
        attempt = 1
        if leases:
            last = max(leases, key=lambda lease: (lease.attempt, lease.id))
            attempt = last.attempt if last.outcome in _RESUMABLE else last.attempt + 1
        resumed = bool(leases) or row.state != State.REQUESTED or row.heartbeat_at is not None
        return Adopted(row.id, State(row.state), attempt, resumed)
