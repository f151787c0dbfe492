"""plan(observed) -> actions: the whole reconciliation policy as one pure function, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from provisioner.reconciler.down import device_down
from provisioner.reconciler.model import (
    FLOW_RUN_ALIVE,
    FLOW_RUN_NOT_STARTED,
    Action,
    ContainerView,
    DeviceView,
    Kind,
    Observed,
    Reason,
    SessionView,
)
from provisioner.store import LIVE, PROVISIONING, DeviceState, LeaseOutcome, State


@dataclass(frozen=True)
class Policy:
    grace: timedelta  # before an unowned container or a pending purchase is trusted as leaked
    provisioning_deadline: timedelta  # a dead flow's session is compensated this long after its last change
    stale_after: timedelta = timedelta(seconds=90)  # a heartbeat this old means the flow's process died
    device_grace: timedelta = timedelta(seconds=60)  # a device down this long (over two passes) is gone
    run_start_deadline: timedelta = timedelta(seconds=300)  # Scheduled/Pending longer: no worker took it
    max_submissions: int = 2  # provision runs per session: the first, and one re-submission
    unhealthy_grace: timedelta = timedelta(seconds=30)  # the same, for a device down as unhealthy


def _flow_run_dead(session: SessionView, observed: Observed, policy: Policy) -> str | None:
    """Why the provision in charge of this session is dead, or None while it lives.

    Prefect's view comes first (its heartbeat automation marks killed runs Crashed), and our own
    session heartbeat covers what Prefect cannot see: a run on another Prefect API (a CLI run on a
    temporary server) is "not found" here yet alive while its heartbeat is fresh; a run Prefect
    still calls running is dead when its heartbeat stopped before Prefect's automation noticed."""
    run = session.flow_run_id
    if not run:
        return "no flow run recorded"
    state = observed.flow_runs.get(run)
    last_sign_of_life = session.heartbeat_at or session.updated_at
    fresh = observed.now - last_sign_of_life < policy.stale_after
    if state is None:
        if session.heartbeat_at is not None and fresh:
            return None
        return f"flow run {run} not found"
    detail = observed.run_details.get(run)
    if state in FLOW_RUN_NOT_STARTED:
        since = (detail.since if detail else None) or last_sign_of_life
        if observed.now - since < policy.run_start_deadline:
            return None
        return f"flow run {run} still {state.lower()} after {policy.run_start_deadline.total_seconds():g} s: no worker started it"
    if state not in FLOW_RUN_ALIVE:
        message = f": {detail.message}" if detail and detail.message else ""
        return f"flow run {run} is {state.lower()}{message}"[:500]
    if not fresh:
        return f"flow run {run} is {state.lower()} but its heartbeat stopped at {last_sign_of_life:%H:%M:%S}"
    return None


def _resubmittable(session: SessionView, observed: Observed, policy: Policy, leased: set[str]) -> bool:
    """A session whose run died before doing anything (nothing bought, nothing started) may be run
    again once, exactly as it was requested."""
    if session.state != State.REQUESTED or not session.has_request or session.id in leased:
        return False
    if session.submissions >= policy.max_submissions:
        return False
    state = observed.flow_runs.get(session.flow_run_id) if session.flow_run_id else None
    return session.flow_run_id is None or state is None or state in FLOW_RUN_NOT_STARTED | {"CRASHED"}


def _idle_for(session: SessionView, observed: Observed) -> str | None:
    """Why a verified session counts as idle (no screen activity for its idle timeout), or None."""
    if session.state != State.VERIFIED or not session.idle_timeout_s or session.idle_since is None:
        return None
    quiet = observed.now - session.idle_since
    if quiet < timedelta(seconds=session.idle_timeout_s):
        return None
    return f"no activity for {quiet.total_seconds():.0f} s (idle timeout {session.idle_timeout_s:g} s)"


def _down(row: DeviceView, containers: dict[str, ContainerView], observed: Observed, policy: Policy):
    return device_down(
        row,
        containers.get("device"),
        observed.now,
        device_grace=policy.device_grace,
        unhealthy_grace=policy.unhealthy_grace,
        session_id=row.session_id,
    )


_ENDS_SESSION = frozenset(
    {Kind.COMPENSATE_SESSION, Kind.EXPIRE_SESSION, Kind.ORPHAN_SESSION, Kind.FINISH_RELEASE}
)


def plan(observed: Observed, policy: Policy) -> list[Action]:
    """Every action that brings Docker and the providers in line with the database (or the
    database in line with what no longer exists). Deterministic for a given observation."""
    actions: list[Action] = []
    by_device: dict[str, dict[str, ContainerView]] = {}
    for container in observed.containers:
        by_device.setdefault(container.device_id, {})[container.role] = container
    live_ids = {s.id for s in observed.sessions}
    leased = {lease.session_id for lease in observed.leases}
    devices = {d.id: d for d in observed.devices}
    host_of = {d.id: d.host for d in observed.devices}

    for session in observed.sessions:
        mine = by_device.get(session.device_id, {}) if session.device_id else {}
        # d. a provision whose flow run died: run it again if it never did anything, else undo it.
        dead = _flow_run_dead(session, observed, policy) if session.state in PROVISIONING else None
        if dead and observed.now - session.updated_at >= policy.provisioning_deadline:
            if _resubmittable(session, observed, policy, leased):
                actions.append(
                    Action(
                        Kind.SUBMIT_RUN,
                        f"{Reason.RUN_NEVER_STARTED}: {dead}",
                        session_id=session.id,
                        run_id=session.flow_run_id,
                    )
                )
            else:
                actions.append(
                    Action(Kind.COMPENSATE_SESSION, f"{Reason.FLOW_RUN_GONE}: {dead}", session_id=session.id)
                )
            continue
        # e. past its ttl: release it.
        if session.state in LIVE and session.expires_at is not None and session.expires_at <= observed.now:
            actions.append(Action(Kind.EXPIRE_SESSION, Reason.TTL_PASSED, session_id=session.id))
            continue
        # h. verified but nobody used its screen for its idle timeout: release it (expired).
        if idle := _idle_for(session, observed):
            actions.append(Action(Kind.EXPIRE_SESSION, f"{Reason.IDLE}: {idle}", session_id=session.id))
            continue
        # g. a release whose process died after it marked the session releasing: finish it.
        if session.state == State.RELEASING:
            if observed.now - session.updated_at >= policy.provisioning_deadline:
                actions.append(Action(Kind.FINISH_RELEASE, Reason.RELEASE_STALLED, session_id=session.id))
            continue
        if session.state not in LIVE:
            continue
        # j. its device's host is down (silent past the host grace): orphan it now, the
        # compensation closes its numbers and retires its device; a late host: leave it alone.
        host = host_of.get(session.device_id or "")
        if host in observed.down_hosts:
            actions.append(
                Action(
                    Kind.ORPHAN_SESSION,
                    f"host {host} down",
                    session_id=session.id,
                    device_id=session.device_id,
                )
            )
            continue
        if host in observed.late_hosts:
            continue  # nothing is known of its containers this pass
        # b. its device is down (reconciler.down): noted, orphaned once down past the grace.
        row = devices.get(session.device_id or "")
        if row is None:
            # No live device row: retired or failed under a live session (a provision's rollback
            # retires its device just before its compensation ends the session). Past the device
            # grace nobody is ending it: orphan it, so no live-looking session is left without
            # its containers.
            ended = session.device_ended_at
            if ended is not None and observed.now - ended >= policy.device_grace:
                gone_for = (observed.now - ended).total_seconds()
                actions.append(
                    Action(
                        Kind.ORPHAN_SESSION,
                        f"{Reason.DEVICE_ENDED_UNDER_SESSION} ({gone_for:.0f} s ago)",
                        session_id=session.id,
                    )
                )
            continue
        down = _down(row, mine, observed, policy)
        if down.gone:
            actions.append(Action(Kind.ORPHAN_SESSION, down.gone, session_id=session.id))
            continue
        if down.record is not None:
            actions.append(down.record)
        if down.condition:
            continue
        stream = mine.get("stream")
        # a. the device runs but its stream does not (or fails its health check): recreate the stream.
        if stream is None or stream.state != "running" or stream.health == "unhealthy":
            if stream is None:
                why = Reason.STREAM_MISSING
            else:
                why = Reason.STREAM_STOPPED if stream.state != "running" else Reason.STREAM_UNHEALTHY
            actions.append(Action(Kind.HEAL_STREAM, why, session_id=session.id, device_id=session.device_id))
        elif row is not None and not row.routed:
            # a'. its stream runs but the gateway has no route to it (a device booted before routes
            # were recorded): the heal finds the running stream and records its route.
            why = Reason.STREAM_UNROUTED
            actions.append(Action(Kind.HEAL_STREAM, why, session_id=session.id, device_id=session.device_id))

    # h. a provision run Prefect still calls alive whose session has ended: end it in Prefect too.
    for stray in observed.stray_runs:
        if observed.now - stray.ended_at < policy.grace:
            continue  # the run may be reporting its own end right now
        actions.append(
            Action(
                Kind.END_STRAY_RUN,
                f"{Reason.RUN_FOR_ENDED_SESSION} ({stray.session_state})",
                session_id=stray.session_id,
                run_id=stray.run_id,
                detail={"state": stray.state},
            )
        )

    # i. a claimed device whose session ended (or never got it): retire it, it never goes back.
    # j. a device on a down host held by no live session (idle, booting): retire it too; its
    # containers stay on the silent engine, removed as unowned when it answers again.
    # b. the same device rule for an idle pool device: noted, retired once down past the grace.
    for row in observed.devices:
        unheld = row.session_id is None or row.session_id not in live_ids
        if row.host in observed.down_hosts and unheld:
            actions.append(Action(Kind.RETIRE_DEVICE, f"host {row.host} down", device_id=row.id))
        elif row.host in observed.late_hosts:
            continue
        elif row.state == DeviceState.CLAIMED and unheld:
            actions.append(Action(Kind.RETIRE_DEVICE, Reason.DEVICE_UNHELD, device_id=row.id))
        elif row.state == DeviceState.IDLE and row.session_id is None:
            down = _down(row, by_device.get(row.id, {}), observed, policy)
            if down.gone:
                actions.append(Action(Kind.RETIRE_DEVICE, down.gone, device_id=row.id))
            elif down.record is not None:
                actions.append(down.record)
    kept = set(devices) | {s.device_id for s in observed.sessions if s.device_id}

    # c. containers of no live device, after a grace period.
    for container in observed.containers:
        if container.device_id in kept:
            continue
        age = observed.now - container.created_at if container.created_at else policy.grace
        if age < policy.grace:
            continue
        actions.append(
            Action(
                Kind.REMOVE_CONTAINER,
                Reason.DEVICE_ENDED if container.device_id else Reason.DEVICE_UNKNOWN,
                device_id=container.device_id or None,
                container_id=container.id,
                container_name=container.name,
            )
        )

    # k. a pair network whose device has no container left and no live row (a device removed
    # behind our back, or a crash between creating the network and the container), after a grace.
    with_containers = {c.device_id for c in observed.containers}
    for network in observed.networks:
        if not network.device_id or network.device_id in kept or network.device_id in with_containers:
            continue
        if network.created_at is not None and observed.now - network.created_at < policy.grace:
            continue
        actions.append(
            Action(
                Kind.REMOVE_NETWORK,
                Reason.NETWORK_UNUSED,
                device_id=network.device_id,
                network_name=network.name,
            )
        )

    # f. numbers: unknown purchases are looked up (any session) when their backoff has passed;
    # cancels refused earlier are retried (any session); other open numbers of ended sessions closed.
    ending = {a.session_id for a in actions if a.kind in _ENDS_SESSION}  # these close their own numbers
    # A provision or a release in progress closes its own numbers; live sessions' refused cancels are ours.
    busy = {s.id for s in observed.sessions if s.state not in LIVE}
    for lease in observed.leases:
        if lease.session_id in ending:
            continue
        due = lease.retry_after is None or lease.retry_after <= observed.now
        if lease.outcome == LeaseOutcome.UNKNOWN:
            if due:
                actions.append(
                    Action(
                        Kind.RESOLVE_PENDING_LEASE,
                        Reason.PURCHASE_UNKNOWN,
                        session_id=lease.session_id,
                        lease_id=lease.id,
                    )
                )
            continue
        if lease.outcome == LeaseOutcome.CANCEL_PENDING and lease.session_id not in busy:
            if due:
                actions.append(
                    Action(
                        Kind.CLOSE_LEASE, Reason.CANCEL_RETRY, session_id=lease.session_id, lease_id=lease.id
                    )
                )
            continue
        if lease.session_id in live_ids:
            continue  # its session is live, or is ended by an action above that closes its numbers
        if lease.outcome == LeaseOutcome.PENDING and not lease.activation_id:
            if observed.now - lease.requested_at >= policy.grace:
                actions.append(
                    Action(
                        Kind.RESOLVE_PENDING_LEASE,
                        Reason.PURCHASE_LEFT_PENDING,
                        session_id=lease.session_id,
                        lease_id=lease.id,
                    )
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
