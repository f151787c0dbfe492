"""Rules about provision flow runs: a dead one (run it again or undo it), a stray one (end it)."""

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


def flow_run_dead(session: SessionView, ctx: Context) -> str | None:
    """Why the provision in charge of this session is dead, or None while it lives.

    Prefect's view comes first (its heartbeat automation marks killed runs Crashed), and our own
    session heartbeat covers what Prefect cannot see: a run on another Prefect API (a CLI run on a
    temporary server) is "not found" here yet alive while its heartbeat is fresh; a run Prefect
    still calls running is dead when its heartbeat stopped before Prefect's automation noticed."""
    observed, policy = ctx.observed, ctx.policy
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


def resubmittable(session: SessionView, ctx: Context) -> bool:
    """A session whose run died before doing anything (nothing bought, nothing started) may be run
    again once, exactly as it was requested."""
    if session.state != State.REQUESTED or not session.has_request or session.id in ctx.leased:
        return False
    if session.submissions >= ctx.policy.max_submissions:
        return False
    state = ctx.observed.flow_runs.get(session.flow_run_id) if session.flow_run_id else None
    return session.flow_run_id is None or state is None or state in FLOW_RUN_NOT_STARTED | {"CRASHED"}


def dead_provision(session: SessionView, ctx: Context) -> Verdict | None:
    """A provision whose flow run died, past the provisioning deadline since the session's last
    change: run it again if it never did anything (resubmittable), else undo it (compensate)."""
    if session.state not in PROVISIONING:
        return None
    dead = flow_run_dead(session, ctx)
    if not dead or ctx.now - session.updated_at < ctx.policy.provisioning_deadline:
        return None
    if resubmittable(session, ctx):
        why = f"{Reason.RUN_NEVER_STARTED}: {dead}"
        return done(Action(Kind.SUBMIT_RUN, why, session_id=session.id, run_id=session.flow_run_id))
    return done(Action(Kind.COMPENSATE_SESSION, f"{Reason.FLOW_RUN_GONE}: {dead}", session_id=session.id))


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
