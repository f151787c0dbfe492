"""Rules about provision flow runs: a dead one (end it, then run it again or undo it), a stray one
(end it)."""

from __future__ import annotations

from provisioner.reconciler.model import (
    FLOW_RUN_ALIVE,
    FLOW_RUN_NOT_STARTED,
    Action,
    Context,
    Kind,
    Reason,
    SessionView,
    StrayRun,
    Verdict,
    done,
)
from provisioner.store import PROVISIONING, State

# Before awaiting_code nothing was bought (the device comes first; number_acquired is a number
# rented before any device): a session in these may be run again from where it stands.
NOTHING_BOUGHT = frozenset({State.REQUESTED, State.LAUNCHING, State.AWAITING_NUMBER})


def flow_run_dead(session: SessionView, ctx: Context) -> str | None:
    """Why the provision in charge of this session is dead, or None while it lives.

    Each of Prefect's states has its own deadline: Scheduled (no worker took it) run_start_deadline,
    Pending (a worker took it, no process reached Running) run_pending_deadline, both from the
    state's timestamp on the server; Running with no sign of life (our session heartbeat; without
    one, the session's last change or entering Running) for stale_after; a final state at once. A
    run Prefect does not know (on another Prefect API: the CLI's temporary server) lives while its
    heartbeat is fresh; with none, or no run recorded, the session waits provisioning_deadline."""
    observed, policy = ctx.observed, ctx.policy
    run = session.flow_run_id
    waited = observed.now - session.updated_at
    if not run:
        return "no flow run recorded" if waited >= policy.provisioning_deadline else None
    state = observed.flow_runs.get(run)
    life = session.heartbeat_at or session.updated_at
    if state is None:
        if session.heartbeat_at is not None and observed.now - life < policy.stale_after:
            return None
        return f"flow run {run} not found" if waited >= policy.provisioning_deadline else None
    detail = observed.run_details.get(run)
    since = detail.since if detail else None  # when it entered its current state
    if state in FLOW_RUN_NOT_STARTED:
        deadline = policy.run_start_deadline if state == "SCHEDULED" else policy.run_pending_deadline
        if observed.now - (since or life) < deadline:
            return None
        why = "no worker started it" if state == "SCHEDULED" else "its worker died before starting it"
        return f"flow run {run} still {state.lower()} after {deadline.total_seconds():g} s: {why}"
    if state not in FLOW_RUN_ALIVE:
        message = f": {detail.message}" if detail and detail.message else ""
        return f"flow run {run} is {state.lower()}{message}"[:500]
    if session.heartbeat_at is None and since is not None:
        life = max(life, since)
    if observed.now - life < policy.stale_after:
        return None
    if session.heartbeat_at is None:
        return f"flow run {run} is {state.lower()} but never beat since {life:%H:%M:%S}"
    return f"flow run {run} is {state.lower()} but its heartbeat stopped at {life:%H:%M:%S}"


def failed_to_start(session: SessionView, ctx: Context) -> bool:
    """A worker took the session's run and never got it Running: Pending past its deadline, or
    ended (Crashed "Failed to submit flow run to infrastructure") without ever running. Nothing of
    ours ran; another attempt may start. A run no worker took (Scheduled) is not one."""
    run = session.flow_run_id or ""
    detail = ctx.observed.run_details.get(run)
    return (
        ctx.observed.flow_runs.get(run) not in (None, "SCHEDULED")
        and detail is not None
        and not detail.started
    )


def resubmittable(session: SessionView, ctx: Context) -> bool:
    """A session whose run died before anything was bought (before awaiting_code, no open lease)
    is run again once, exactly as it was requested, whatever Prefect last said of the dead run;
    unless someone cancelled that run. A run its worker failed to start does not use up that once:
    such runs are made again up to max_submissions_unstarted runs in all."""
    if session.state not in NOTHING_BOUGHT or not session.has_request or session.id in ctx.leased:
        return False
    policy = ctx.policy
    limit = policy.max_submissions_unstarted if failed_to_start(session, ctx) else policy.max_submissions
    if session.submissions >= limit:
        return False
    return ctx.observed.flow_runs.get(session.flow_run_id or "") != "CANCELLED"


def dead_provision(session: SessionView, ctx: Context) -> Verdict | None:
    """A provision whose flow run is dead (flow_run_dead): one action ends the run in Prefect
    (Crashed, its concurrency slot freed) and then runs the session again if nothing was bought
    (resubmittable), else undoes it (compensate), in the pass that finds it dead."""
    if session.state not in PROVISIONING:
        return None
    dead = flow_run_dead(session, ctx)
    if not dead:
        return None
    if resubmittable(session, ctx):
        run_state = ctx.observed.flow_runs.get(session.flow_run_id or "")
        never_started = (
            run_state is None or run_state in FLOW_RUN_NOT_STARTED or failed_to_start(session, ctx)
        )
        why, kind = Reason.RUN_NEVER_STARTED if never_started else Reason.RUN_DIED_EARLY, Kind.SUBMIT_RUN
    else:
        why, kind = Reason.FLOW_RUN_GONE, Kind.COMPENSATE_SESSION
    return done(Action(kind, f"{why}: {dead}", session_id=session.id, run_id=session.flow_run_id))


def stray_run(stray: StrayRun, ctx: Context) -> Verdict | None:
    """A provision run Prefect still calls alive whose session has ended: end it in Prefect too,
    once the grace has passed (the run may be reporting its own end right now)."""
    if ctx.now - stray.ended_at < ctx.policy.grace:
        return None
    return done(
        Action(
            Kind.END_STRAY_RUN,
            f"{Reason.RUN_FOR_ENDED_SESSION} ({stray.session_state})",
            session_id=stray.session_id,
            run_id=stray.run_id,
            detail={"state": stray.state},
        )
    )
