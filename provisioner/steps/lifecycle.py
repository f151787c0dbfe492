"""Ending sessions: compensation after a failure, release on request or at the end of the ttl.

Both are idempotent and do every step they can even when one fails, so a flow hook, a rollback and
the reconciler may all call them for the same session without harm.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from provisioner.runtime.errors import RuntimeFailure
from provisioner.steps.deps import Deps
from provisioner.steps.devices import retire_session_device
from provisioner.steps.numbers import close_open_leases
from provisioner.store import TERMINAL, IllegalTransition, State
from provisioner.store import repository as repo
from provisioner.store.states import ALLOWED, ENDING

log = logging.getLogger(__name__)


@dataclass
class EndResult:
    session_id: str
    state: State
    changed: bool
    problems: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        verb = "is now" if self.changed else "was already"
        extra = f" ({'; '.join(self.problems)})" if self.problems else ""
        return f"session {self.session_id} {verb} {self.state}{extra}"


def remove_containers(deps: Deps, session_id: str, *, reason: str = "its session ended") -> list[str]:
    """Retire the session's device: its containers removed, never back to the pool."""
    try:
        return retire_session_device(deps, session_id, reason=reason[:500])
    except RuntimeFailure as exc:
        return [f"containers: {exc}"]


def compensate(
    deps: Deps, session_id: str, *, reason: str, actor: str, final: State = State.FAILED
) -> EndResult:
    """Undo a provision's side effects (containers, numbers) and end the session in ``final``.

    The session is ended first, then its containers and numbers are cleaned up: a provision still
    running (reconciliation orphaning it, a release) sees the session ended at its next step and
    buys nothing more while the numbers it holds are being closed. What fails to clean up is
    reported in ``problems`` and left to reconciliation (an ended session's open leases and
    containers are closed and removed by its passes)."""
    with deps.sessions.begin() as db:
        session = repo.find_session(db, session_id)
        if session is None:
            return EndResult(session_id, final, False, ["no such session"])
        current = state = State(session.state)
    changed = False
    if current not in ENDING:  # ended, or a release is finishing it: that actor sets the final state
        target = final if final in ALLOWED[current] else State.FAILED
        with deps.sessions.begin() as db:
            try:
                row = repo.transition(
                    db, session_id, target, reason=reason[:2000], actor=actor, last_error=reason[:2000]
                )
                state, changed = State(row.state), True
            except IllegalTransition:  # another actor ended it first
                state = State(repo.get_session(db, session_id).state)
    problems = remove_containers(deps, session_id)
    problems += close_open_leases(deps, session_id)
    if changed:
        log.info("session %s compensated -> %s: %s", session_id, state, reason)
    return EndResult(session_id, state, changed, problems)


def release(
    deps: Deps,
    session_id: str,
    *,
    actor: str,
    reason: str = "released on request",
    final: State = State.RELEASED,
) -> EndResult:
    """Remove the containers, finish or cancel the open number, and end the session."""
    with deps.sessions.begin() as db:
        current = State(repo.get_session(db, session_id, for_update=True).state)
        if current in TERMINAL:
            return EndResult(session_id, current, False)
        if State.RELEASING in ALLOWED[current]:
            repo.transition(db, session_id, State.RELEASING, reason=reason, actor=actor)
    if current != State.RELEASING and State.RELEASING not in ALLOWED[current]:
        # Still provisioning: releasing it means cancelling the provision.
        return compensate(deps, session_id, reason=reason, actor=actor, final=State.CANCELLED)
    problems = remove_containers(deps, session_id)
    problems += close_open_leases(deps, session_id)
    with deps.sessions.begin() as db:
        row = repo.transition(db, session_id, final, reason=reason, actor=actor, expected=State.RELEASING)
    return EndResult(session_id, State(row.state), True, problems)


class Heartbeat:
    """Touches a session's heartbeat from a background thread while a provision runs, so the
    reconciler can tell a live flow from one whose process was killed.

    Kept beside Prefect's flow-run heartbeats (and the automation `provisioner deploy` creates)
    because those cannot give the same guarantee here: they exist only for deployment runs on the
    Prefect API this deployment reads, so a provision started by the CLI (a temporary server)
    sharing the database is "not found" there while it lives; and Prefect beats at most every 30 s
    plus the automation's timeout, where this one lets reconciliation see a killed provision within
    PROVISIONER_RECONCILE__STALE_AFTER_S."""

    def __init__(self, deps: Deps, session_id: str, interval_s: float) -> None:
        self.deps, self.session_id, self.interval_s = deps, session_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{session_id}", daemon=True)

    def _beat(self) -> None:
        try:
            with self.deps.sessions.begin() as db:
                repo.touch_heartbeat(db, self.session_id)
        except Exception:  # a missed beat is harmless; the next one retries
            log.warning("heartbeat of %s failed", self.session_id, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
