"""plan(observed) -> actions: the whole reconciliation policy as one pure function, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from reconciler.model import FLOW_RUN_ALIVE, Action, ContainerView, Kind, Observed, Reason, SessionView
from store import LIVE, PROVISIONING, LeaseOutcome, State


@dataclass(frozen=True)
class Policy:
    grace: timedelta  # before an unowned container or a pending purchase is trusted as leaked
    provisioning_deadline: timedelta  # a dead flow's session is compensated this long after its last change
    stale_after: timedelta = timedelta(seconds=90)  # a heartbeat this old means the flow's process died


def _flow_run_dead(session: SessionView, observed: Observed, policy: Policy) -> str | None:
    """Why the provision in charge of this session is dead, or None while it lives. A run Prefect
    still calls running is dead too when its heartbeat stopped: its process was killed."""
    if not session.flow_run_id:
        return "no flow run recorded"
    state = observed.flow_runs.get(session.flow_run_id)
    if state is None:
        return f"flow run {session.flow_run_id} not found"
    if state not in FLOW_RUN_ALIVE:
        return f"flow run {session.flow_run_id} is {state.lower()}"
    last_sign_of_life = session.heartbeat_at or session.updated_at
    if observed.now - last_sign_of_life >= policy.stale_after:
        return f"flow run {session.flow_run_id} is {state.lower()} but its heartbeat stopped at {last_sign_of_life:%H:%M:%S}"
    return None


def plan(observed: Observed, policy: Policy) -> list[Action]:
    """Every action that brings Docker and the providers in line with the database (or the
    database in line with what no longer exists). Deterministic for a given observation."""
    actions: list[Action] = []
    by_session: dict[str, dict[str, ContainerView]] = {}
    for container in observed.containers:
        by_session.setdefault(container.session_id, {})[container.role] = container
    live_ids = {s.id for s in observed.sessions}

    for session in observed.sessions:
        mine = by_session.get(session.id, {})
        # d. a provision whose flow run died: undo what it did.
        dead = _flow_run_dead(session, observed, policy) if session.state in PROVISIONING else None
        if dead and observed.now - session.updated_at >= policy.provisioning_deadline:
            actions.append(
                Action(Kind.COMPENSATE_SESSION, f"{Reason.FLOW_RUN_GONE}: {dead}", session_id=session.id)
            )
            continue
        # e. past its ttl: release it.
        if session.state in LIVE and session.expires_at is not None and session.expires_at <= observed.now:
            actions.append(Action(Kind.EXPIRE_SESSION, Reason.TTL_PASSED, session_id=session.id))
            continue
        # g. a release whose process died after it marked the session releasing: finish it.
        if session.state == State.RELEASING:
            if observed.now - session.updated_at >= policy.provisioning_deadline:
                actions.append(Action(Kind.FINISH_RELEASE, Reason.RELEASE_STALLED, session_id=session.id))
            continue
        if session.state not in LIVE:
            continue
        device, stream = mine.get("device"), mine.get("stream")
        # b. the device is gone: nothing to heal, the session is orphaned.
        if device is None or device.state != "running":
            why = Reason.DEVICE_MISSING if device is None else Reason.DEVICE_STOPPED
            actions.append(Action(Kind.ORPHAN_SESSION, why, session_id=session.id))
            continue
        # a. the device runs but its stream does not: recreate the stream.
        if stream is None or stream.state != "running":
            why = Reason.STREAM_MISSING if stream is None else Reason.STREAM_STOPPED
            actions.append(Action(Kind.HEAL_STREAM, why, session_id=session.id))

    # c. containers nobody owns any more, after a grace period.
    for container in observed.containers:
        if container.session_id in live_ids:
            continue
        age = observed.now - container.created_at if container.created_at else policy.grace
        if age < policy.grace:
            continue
        actions.append(
            Action(
                Kind.REMOVE_CONTAINER,
                Reason.SESSION_TERMINAL if container.session_id else Reason.SESSION_UNKNOWN,
                session_id=container.session_id or None,
                container_id=container.id,
                container_name=container.name,
            )
        )

    # f. numbers still open on sessions that ended (or are being ended in this pass).
    for lease in observed.leases:
        if lease.session_id in live_ids:
            continue  # its session is live, or is ended by an action above that closes its numbers
        if lease.outcome == LeaseOutcome.PENDING and not lease.activation_id:
            if observed.now - lease.requested_at >= policy.grace:
                actions.append(
                    Action(
                        Kind.RESOLVE_PENDING_LEASE,
                        Reason.PURCHASE_UNKNOWN,
                        session_id=lease.session_id,
                        lease_id=lease.id,
                    )
                )
            continue
        if lease.outcome == LeaseOutcome.CANCEL_PENDING:
            if lease.retry_after is not None and lease.retry_after > observed.now:
                continue
            actions.append(
                Action(Kind.CLOSE_LEASE, Reason.CANCEL_RETRY, session_id=lease.session_id, lease_id=lease.id)
            )
            continue
        actions.append(
            Action(
                Kind.CLOSE_LEASE,
                Reason.LEASE_ON_ENDED_SESSION,
                session_id=lease.session_id,
                lease_id=lease.id,
            )
        )
    return actions
