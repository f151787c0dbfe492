"""The request lifecycle the gateway owns: accepting a provision durably, and ending a session.

Accepting writes the session row first (``requested``, the request, who asked, the idempotency
key) and only then creates the flow run, whose id is recorded next. So ``GET`` and ``DELETE`` work
the moment the 202 is sent, and a lost flow run is found by reconciliation (the session has no run,
or its run never started) instead of being a 404 forever.

The Prefect idempotency key of a session's first run is the client's key (scoped) or
``provision:<session id>``: creating it again (a replayed POST, reconciliation finishing an accept
that died between the row and the run) returns the same run.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from provisioner.prefect_api.names import RELEASE_DEPLOYMENT, provision_deployment
from provisioner.prefect_api.orchestrator import FlowRuns, OrchestratorError
from provisioner.steps.deps import Deps
from provisioner.steps.devices import claim_device
from provisioner.steps.request import ProvisionRequest, resolve
from provisioner.steps.runs import first_run_key, provision_parameters
from provisioner.store import State, new_session_id
from provisioner.store import repository as repo
from provisioner.store.clients import Client
from provisioner.store.repository import StaleState
from provisioner.store.states import ALLOWED, TERMINAL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    session_id: str
    flow_run_id: str | None
    state: str
    device_id: str | None = None  # an idle pool device claimed while accepting
    expires_at: datetime | None = None


class LimitReached(Exception):
    """The client holds as many live sessions as it may, or started as many as it may this
    minute; nothing was written or bought. ``retry_after_s``: when to try again."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def check_limits(db: Session, owner: str, limits: Client) -> None:
    """Raise LimitReached when a new session would exceed the owner's limits. Called inside the
    transaction that writes the session, under a lock per owner, so concurrent requests of one
    client are counted one after the other (across gateway processes too)."""
    db.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"owner:{owner}"})
    if limits.max_sessions is not None:
        live = repo.live_sessions_of(db, owner)
        if len(live) >= limits.max_sessions:
            now = db.scalar(select(func.now()))
            ends = [row.expires_at for row in live if row.expires_at is not None]
            wait = min(ends) - now if ends else timedelta(seconds=60)
            raise LimitReached(
                f"{owner} holds {len(live)} live sessions, its limit is {limits.max_sessions}: release one",
                retry_after_s=_seconds(wait),
            )
    if limits.rate_per_min is not None:
        started = repo.sessions_started_since(db, owner, timedelta(minutes=1))
        if len(started) >= limits.rate_per_min:
            now = db.scalar(select(func.now()))
            raise LimitReached(
                f"{owner} started {len(started)} sessions in the last minute, its limit is "
                f"{limits.rate_per_min}/min",
                retry_after_s=_seconds(min(started) + timedelta(minutes=1) - now),
            )


def _seconds(delta: timedelta) -> int:
    return min(max(int(delta.total_seconds()) + 1, 1), 3600)


async def accept(
    deps: Deps,
    runs: FlowRuns,
    provision: ProvisionRequest,
    *,
    idempotency_key: str | None,
    requested_by: str,
    owner: str,
    limits: Client | None = None,
) -> Accepted:
    """Write the session, then start (or find) its provision run. Raises OrchestratorError when
    Prefect cannot take the run: a session with a client key stays ``requested`` for the client's
    retry (or reconciliation); one without a key, or whose run Prefect refused (``retryable`` false),
    is ended ``failed`` so a retry cannot buy twice."""
    request = provision.model_dump(mode="json", exclude_none=True)
    plan = resolve(provision, deps.settings)

    def write() -> tuple[str, str | None, str, datetime | None]:
        with deps.sessions.begin() as db:
            if idempotency_key and (row := repo.find_by_idempotency_key(db, idempotency_key)):
                return row.id, row.flow_run_id, row.state, row.expires_at
            if limits is not None:
                check_limits(db, owner, limits)
            row = repo.create_session(
                db,
                service=plan.service,
                country=plan.country,
                device_profile=plan.device_profile,
                ttl=timedelta(seconds=plan.ttl_s),
                actor=requested_by,
                session_id=new_session_id(),
                request=request,
                requested_by=requested_by,
                idempotency_key=idempotency_key,
                owner=owner,
            )
            return row.id, None, row.state, row.expires_at

    try:
        session_id, run_id, state, expires_at = await run_in_threadpool(write)
    except IntegrityError:  # a concurrent replay of the same key inserted first: answer with it
        session_id, run_id, state, expires_at = await run_in_threadpool(write)
    if run_id is not None or State(state) in TERMINAL:
        return Accepted(session_id, run_id, state, expires_at=expires_at)

    def stored_request() -> dict[str, Any] | None:
        with deps.sessions() as db:
            return repo.get_session(db, session_id).request

    parameters = provision_parameters(await run_in_threadpool(stored_request), session_id)
    try:
        run = await runs.start(
            provision_deployment(deps.settings.gateway.run_on),
            parameters,
            idempotency_key=first_run_key(session_id, idempotency_key),
        )
    except OrchestratorError as exc:
        if idempotency_key is None or not exc.retryable:
            await run_in_threadpool(_fail_unsubmitted, deps, session_id, f"{exc.reason}: {exc}", requested_by)
        raise

    def record() -> str:
        with deps.sessions.begin() as db:
            return repo.record_submission(db, session_id, str(run.id)).state

    state = await run_in_threadpool(record)
    device_id = await run_in_threadpool(_claim_warm, deps, session_id, plan.device_profile, requested_by)
    state = State.AWAITING_NUMBER if device_id else state
    return Accepted(session_id, str(run.id), state, device_id, expires_at)


def _claim_warm(deps: Deps, session_id: str, profile: str, actor: str) -> str | None:
    """Claim an idle pool device for the session now, so its stream is ready before the flow run
    even starts (the run adopts it). None when no device is idle: the run cold-boots one."""
    try:
        device = claim_device(deps, session_id, profile=profile, actor=actor)
    except Exception:  # the run claims or boots by itself; never fail an accepted request here
        log.warning(
            "claiming a warm device for %s failed; its flow run will get one", session_id, exc_info=True
        )
        return None
    return device.id if device is not None else None


def _fail_unsubmitted(deps: Deps, session_id: str, reason: str, actor: str) -> None:
    why = f"no flow run could be created: {reason}"[:2000]
    with deps.sessions.begin() as db, contextlib.suppress(StaleState):
        repo.transition(
            db, session_id, State.FAILED, reason=why, actor=actor, expected=State.REQUESTED, last_error=why
        )


@dataclass(frozen=True)
class Ending:
    """What DELETE did: ``started`` is the release run's id, None when nothing had to start."""

    session_id: str
    state: str
    flow_run_id: str | None = None


async def end(
    deps: Deps, runs: FlowRuns, session_id: str, *, actor: str, idempotency_key: str | None
) -> Ending:
    """DELETE: an ended session answers its state and starts nothing; a session whose provision
    run has not started is cancelled in Prefect and ended ``cancelled`` here (nothing was bought);
    anything else gets a release flow run (the same one for a repeated DELETE) and reads
    ``releasing`` from the moment of the reply, not only once that run starts."""

    def read() -> tuple[str, str | None]:
        with deps.sessions() as db:
            row = repo.get_session(db, session_id)
            return row.state, row.flow_run_id

    state, run_id = await run_in_threadpool(read)
    if State(state) in TERMINAL:
        return Ending(session_id, state)
    if State(state) == State.REQUESTED and (run_id is None or await runs.cancel_unstarted(run_id)):

        def cancel() -> str | None:
            with deps.sessions.begin() as db:
                try:
                    row = repo.transition(
                        db,
                        session_id,
                        State.CANCELLED,
                        reason="cancelled on request before its flow run started",
                        actor=actor,
                        expected=State.REQUESTED,
                    )
                except StaleState:
                    return None
                return row.state

        cancelled = await run_in_threadpool(cancel)
        if cancelled is not None:
            return Ending(session_id, cancelled)
    run = await runs.start(RELEASE_DEPLOYMENT, {"session_id": session_id}, idempotency_key=idempotency_key)
    await run_in_threadpool(_mark_releasing, deps, session_id, actor)
    return Ending(session_id, State.RELEASING.value, str(run.id))


def _mark_releasing(deps: Deps, session_id: str, actor: str) -> None:
    """Record the release as soon as its run exists (the run accepts a session already
    releasing; reconciliation finishes a release whose run dies). A session still provisioning
    stays as it is: its release run cancels the provision."""
    with deps.sessions.begin() as db:
        current = State(repo.get_session(db, session_id, for_update=True).state)
        if State.RELEASING in ALLOWED[current]:
            repo.transition(db, session_id, State.RELEASING, reason="release requested", actor=actor)
