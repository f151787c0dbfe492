"""Carrying out planned actions, each isolated: one failure is reported, the rest still run."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select

from providers.base import Lease
from providers.errors import ProviderError
from provisioning.deps import Deps, ProviderNotConfigured
from provisioning.devices import retire_device
from provisioning.lifecycle import compensate, release
from provisioning.numbers import CancelDeferred, cancel_number, close_number
from provisioning.runs import end_run, first_run_key, resubmission_key, submit_provision
from reconciler.model import Action, Kind, Reason
from store import LeaseOutcome, LeaseRow, State
from store import devices as devrepo
from store import repository as repo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionResult:
    action: Action
    ok: bool
    result: str


def act(deps: Deps, actions: list[Action], *, actor: str) -> list[ActionResult]:
    results = []
    for action in actions:
        try:
            outcome = _HANDLERS[action.kind](deps, action, actor)
            results.append(ActionResult(action, True, outcome))
        except Exception as exc:  # isolation: report it and go on with the next action
            log.exception("reconcile action %s on %s failed", action.kind, action.target)
            results.append(ActionResult(action, False, f"error: {type(exc).__name__}: {exc}"))
    return results


def _heal_stream(deps: Deps, action: Action, actor: str) -> str:
    sid, device_id = action.session_id, action.device_id
    assert sid and device_id
    runtime = deps.runtime
    if action.reason == Reason.STREAM_UNHEALTHY:  # running but silent: replace it
        runtime.remove(runtime.name_for(device_id, "stream"))
    stream = runtime.heal_stream(device_id)
    runtime.wait_stream_ready(device_id, deps.settings.docker.readiness_timeout_s)
    url = runtime.stream_url(stream) if stream.host_port else None
    with deps.sessions.begin() as db:
        if url:
            repo.update_session(db, sid, stream_url=url, stream_container=stream.name)
        repo.record_event(db, sid, reason=f"stream healed: {action.reason}", actor=actor)
    return f"stream {stream.name} recreated"


def _record_health(deps: Deps, action: Action, actor: str) -> str:
    assert action.device_id
    health = action.detail["health"]
    with deps.sessions.begin() as db:
        devrepo.record_health(db, action.device_id, health, at=db.scalar(select(func.now())))
    return f"device {action.device_id} is {health}"


def _retire_device(deps: Deps, action: Action, actor: str) -> str:
    assert action.device_id
    problems = retire_device(deps, action.device_id, reason=str(action.reason))
    return "retired" + (f" ({'; '.join(problems)})" if problems else "")


def _orphan(deps: Deps, action: Action, actor: str) -> str:
    assert action.session_id
    result = compensate(
        deps, action.session_id, reason=f"orphaned: {action.reason}", actor=actor, final=State.ORPHANED
    )
    return result.message


def _compensate(deps: Deps, action: Action, actor: str) -> str:
    assert action.session_id
    return compensate(deps, action.session_id, reason=action.reason, actor=actor, final=State.FAILED).message


def _expire(deps: Deps, action: Action, actor: str) -> str:
    assert action.session_id
    return release(deps, action.session_id, actor=actor, reason=action.reason, final=State.EXPIRED).message


def _finish_release(deps: Deps, action: Action, actor: str) -> str:
    assert action.session_id
    return release(deps, action.session_id, actor=actor, reason=action.reason).message


def _remove_container(deps: Deps, action: Action, actor: str) -> str:
    assert action.container_id
    removed = deps.runtime.remove(action.container_id)
    return "removed" if removed else "already gone"


def _close_lease(deps: Deps, action: Action, actor: str) -> str:
    assert action.lease_id is not None
    with deps.sessions.begin() as db:
        outcome = db.get_one(LeaseRow, action.lease_id).outcome
    try:
        return close_number(deps, action.lease_id, code_received=outcome == LeaseOutcome.CODE_RECEIVED)
    except CancelDeferred as exc:
        return f"cancel pending until {exc.retry_at:%H:%M:%S}"


def _resolve_pending(deps: Deps, action: Action, actor: str) -> str:
    """A purchase whose reply was lost: find it at the provider if the protocol can list open
    activations, adopt it and cancel it; otherwise flag it for a person.

    An open activation our database does not know is taken to be the lost purchase only when it
    is the only one, and no purchase of that provider is in flight right now; anything less
    certain is flagged for a person. This assumes the provider account is this deployment's alone.
    """
    assert action.lease_id is not None
    with deps.sessions.begin() as db:
        row = db.get_one(LeaseRow, action.lease_id)
        provider_name = row.provider
        known = {
            a for (a,) in db.query(LeaseRow.activation_id).filter(LeaseRow.provider == provider_name) if a
        }
        # Another pending purchase of this provider, not this one: its reply may still be on its way.
        in_flight = (
            db.query(LeaseRow.id)
            .filter(
                LeaseRow.provider == provider_name,
                LeaseRow.outcome == LeaseOutcome.PENDING.value,
                LeaseRow.activation_id.is_(None),
                LeaseRow.id != action.lease_id,
            )
            .first()
            is not None
        )
    try:
        open_activations = deps.provider(provider_name).find_open_activations()
    except (ProviderError, ProviderNotConfigured) as exc:
        open_activations = None
        log.warning("cannot list %s activations: %s", provider_name, exc)
    if open_activations is None:
        with deps.sessions.begin() as db:
            repo.set_lease_outcome(
                db,
                action.lease_id,
                LeaseOutcome.NEEDS_ATTENTION,
                provider_status=f"{provider_name} cannot list open activations; check the account by hand",
            )
        return "flagged for a person: the provider cannot list open activations"
    unknown: list[Lease] = [a for a in open_activations if a.activation_id not in known]
    if len(unknown) > 1 or (unknown and in_flight):
        with deps.sessions.begin() as db:
            repo.set_lease_outcome(
                db,
                action.lease_id,
                LeaseOutcome.NEEDS_ATTENTION,
                provider_status=f"{len(unknown)} unknown open activation(s) at {provider_name}; which one is ours "
                "is uncertain: check the account by hand",
            )
        return "flagged for a person: the lost purchase cannot be told apart with certainty"
    if not unknown:
        with deps.sessions.begin() as db:
            repo.set_lease_outcome(
                db, action.lease_id, LeaseOutcome.FAILED, provider_status="no purchase found at the provider"
            )
        return "no purchase found at the provider: nothing was bought"
    found = unknown[0]
    with deps.sessions.begin() as db:
        repo.complete_lease(
            db,
            action.lease_id,
            repo.BoughtNumber(found.activation_id, found.phone, found.price, found.currency, found.bought_at),
        )
    try:
        cancel_number(deps, action.lease_id)
    except CancelDeferred as exc:
        return f"adopted activation {found.activation_id}; cancel pending until {exc.retry_at:%H:%M:%S}"
    return f"adopted activation {found.activation_id} and cancelled it"


def _submit_run(deps: Deps, action: Action, actor: str) -> str:
    """Run a session's provision again (it never started, or died before doing anything): the old
    run is cancelled if it still waits, the new one adopts the session. A session without a run
    recorded gets its first run under the first run's key (the gateway may have made it already)."""
    sid = action.session_id
    assert sid
    with deps.sessions() as db:
        row = repo.get_session(db, sid)
        request, key, submissions = row.request, row.idempotency_key, row.submissions
    if action.run_id:
        end_run(action.run_id, f"replaced by a new provision run: {action.reason}")
        key = resubmission_key(sid, submissions + 1)
    else:
        key = first_run_key(sid, key)
    run_id = submit_provision(sid, request, idempotency_key=key)
    with deps.sessions.begin() as db:
        repo.record_submission(db, sid, run_id)
        repo.record_event(db, sid, reason=f"provision run {run_id} submitted: {action.reason}", actor=actor)
    return f"submitted flow run {run_id}"


def _end_stray_run(deps: Deps, action: Action, actor: str) -> str:
    assert action.run_id
    return end_run(action.run_id, f"its session {action.session_id} has ended: {action.reason}")


def _mark_device_down(deps: Deps, action: Action, actor: str) -> str:
    assert action.session_id
    with deps.sessions.begin() as db:
        repo.set_device_down_since(db, action.session_id, db.scalar(select(func.now())))
    return "noted; retired if it stays so for the grace period"


def _clear_device_down(deps: Deps, action: Action, actor: str) -> str:
    assert action.session_id
    with deps.sessions.begin() as db:
        repo.set_device_down_since(db, action.session_id, None)
    return "device running again"


_HANDLERS = {
    Kind.HEAL_STREAM: _heal_stream,
    Kind.ORPHAN_SESSION: _orphan,
    Kind.COMPENSATE_SESSION: _compensate,
    Kind.EXPIRE_SESSION: _expire,
    Kind.REMOVE_CONTAINER: _remove_container,
    Kind.CLOSE_LEASE: _close_lease,
    Kind.RESOLVE_PENDING_LEASE: _resolve_pending,
    Kind.FINISH_RELEASE: _finish_release,
    Kind.SUBMIT_RUN: _submit_run,
    Kind.END_STRAY_RUN: _end_stray_run,
    Kind.MARK_DEVICE_DOWN: _mark_device_down,
    Kind.CLEAR_DEVICE_DOWN: _clear_device_down,
    Kind.RECORD_HEALTH: _record_health,
    Kind.RETIRE_DEVICE: _retire_device,
}
