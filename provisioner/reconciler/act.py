"""Carrying out planned actions, each isolated: one failure is reported, the rest still run."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select

from providers.errors import ProviderError
from provisioner.prefect_api.names import provision_deployment
from provisioner.prefect_api.runs import end_run, submit_provision
from provisioner.reconciler.model import Action, Kind, Reason
from provisioner.steps.deps import Deps
from provisioner.steps.devices import retire_device
from provisioner.steps.lifecycle import compensate, release
from provisioner.steps.numbers import CancelDeferred, cancel_number, close_number, defer_cancel
from provisioner.steps.purchases import Resolution, resolve_unknown
from provisioner.steps.runs import first_run_key, provision_parameters, resubmission_key
from provisioner.store import LeaseOutcome, LeaseRow, State
from provisioner.store import devices as devrepo
from provisioner.store import repository as repo

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
    with deps.sessions() as db:
        secret = devrepo.get_device(db, device_id).stream_secret
    stream = runtime.heal_stream(device_id, secret=secret)
    ready = runtime.wait_stream_ready(device_id, deps.settings.docker.readiness_timeout_s, secret=secret)
    url = runtime.stream_url(stream) if stream.host_port else None
    with deps.sessions.begin() as db:
        if url:
            repo.update_session(db, sid, stream_url=url, stream_container=stream.name)
        # The gateway's route: the new container has a new address (and published port).
        devrepo.set_stream(db, device_id, route=runtime.stream_route(ready), url=url)
        repo.record_event(db, sid, reason=f"stream healed: {action.reason}", actor=actor)
    return f"stream {stream.name} recreated"


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
    """End the dead run in Prefect (its slot comes back), then undo what the session holds."""
    assert action.session_id
    ended = end_run(action.run_id, action.reason, dead=True) if action.run_id else "no run"
    result = compensate(deps, action.session_id, reason=action.reason, actor=actor, final=State.FAILED)
    return f"run {ended}; {result.message}"


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


def _remove_network(deps: Deps, action: Action, actor: str) -> str:
    assert action.device_id
    removed = deps.runtime.remove_pair_network(action.device_id)
    return "removed" if removed else "already gone, or a container uses it again"


def _guard_network(deps: Deps, action: Action, actor: str) -> str:
    assert action.device_id
    installed = deps.runtime.guard_pair_network(action.device_id)
    return "egress rules installed" if installed else "network already gone"


def _remove_guard(deps: Deps, action: Action, actor: str) -> str:
    assert action.network_name
    removed = deps.runtime.remove_guard(action.network_name)
    return "egress rules removed" if removed else "kept: a network of that name exists again"


def _close_lease(deps: Deps, action: Action, actor: str) -> str:
    """Close an open number; a failure is counted, retried with backoff, then needs_attention."""
    assert action.lease_id is not None
    with deps.sessions.begin() as db:
        outcome = db.get_one(LeaseRow, action.lease_id).outcome
    try:
        return close_number(
            deps, action.lease_id, code_received=outcome == LeaseOutcome.CODE_RECEIVED, count_failure=True
        )
    except CancelDeferred as exc:
        return _after_deferral(deps, action.lease_id, exc)
    except ProviderError as exc:  # e.g. the provider answers 5xx: count it and retry later
        deferred = defer_cancel(deps, action.lease_id, f"{type(exc).__name__}: {exc}", None, count=True)
        return _after_deferral(deps, action.lease_id, deferred)


def _after_deferral(deps: Deps, lease_id: int, exc: CancelDeferred) -> str:
    with deps.sessions() as db:
        row = db.get_one(LeaseRow, lease_id)
    if row.outcome == LeaseOutcome.NEEDS_ATTENTION:
        return f"needs attention: {row.attention}"
    return f"cancel pending until {exc.retry_at:%H:%M:%S} (failure {row.retries})"


def _resolve_pending(deps: Deps, action: Action, actor: str) -> str:
    """A purchase whose outcome is unknown: look it up at the provider (steps.purchases).
    An adopted number is surplus (its provision moved on or ended), so it is closed at once."""
    assert action.lease_id is not None
    resolved = resolve_unknown(deps, action.lease_id)
    if resolved.resolution != Resolution.ADOPTED:
        return f"{resolved.resolution}: {resolved.detail}"
    try:
        closed = cancel_number(deps, action.lease_id, count_failure=True)
    except CancelDeferred as exc:
        return f"{resolved.detail}; {_after_deferral(deps, action.lease_id, exc)}"
    return f"{resolved.detail}; {closed}"


def _submit_run(deps: Deps, action: Action, actor: str) -> str:
    """Run a session's provision again (its run never started, or died before buying anything): the
    dead run is ended in Prefect (Crashed, its slot freed), the new one adopts the session. A session
    without a run recorded gets its first run under the first run's key (the gateway may have made
    it already)."""
    sid = action.session_id
    assert sid
    with deps.sessions() as db:
        row = repo.get_session(db, sid)
        request, key, submissions = row.request, row.idempotency_key, row.submissions
    ended = ""
    if action.run_id:
        ended = f"run {action.run_id} {end_run(action.run_id, action.reason, dead=True)}; "
        key = resubmission_key(sid, submissions + 1)
    else:
        key = first_run_key(sid, key)
    deployment = provision_deployment(deps.settings.gateway.run_on)
    run_id = submit_provision(deployment, provision_parameters(request, sid), idempotency_key=key)
    with deps.sessions.begin() as db:
        repo.record_submission(db, sid, run_id)
        repo.record_event(db, sid, reason=f"provision run {run_id} submitted: {action.reason}", actor=actor)
    return f"{ended}submitted flow run {run_id}"


def _end_stray_run(deps: Deps, action: Action, actor: str) -> str:
    assert action.run_id
    return end_run(action.run_id, f"its session {action.session_id} has ended: {action.reason}")


def _mark_device_down(deps: Deps, action: Action, actor: str) -> str:
    assert action.device_id
    condition = action.detail["condition"]
    with deps.sessions.begin() as db:
        devrepo.mark_down(db, action.device_id, condition, at=db.scalar(select(func.now())))
    return f"device {condition}: noted; gone if it stays down past the grace period"


def _clear_device_down(deps: Deps, action: Action, actor: str) -> str:
    assert action.device_id
    with deps.sessions.begin() as db:
        devrepo.clear_down(db, action.device_id)
    return "device up again"


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
    Kind.RETIRE_DEVICE: _retire_device,
    Kind.REMOVE_NETWORK: _remove_network,
    Kind.GUARD_NETWORK: _guard_network,
    Kind.REMOVE_GUARD: _remove_guard,
}
