"""Observation: one query for sessions, one for leases, one Docker call, one Prefect call."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reconciler.model import ContainerView, LeaseView, Observed, SessionView
from runtime import ContainerRuntime
from store import State
from store import repository as repo

FlowRunStates = Callable[[Iterable[str]], dict[str, str | None]]


def observe(db: Session, runtime: ContainerRuntime, flow_run_states: FlowRunStates) -> Observed:
    now = db.scalar(select(func.now()))  # the database's clock, the one timestamps were written with
    sessions = [
        SessionView(
            s.id,
            State(s.state),
            s.flow_run_id,
            s.updated_at,
            s.expires_at,
            bool(s.verification_code),
            heartbeat_at=s.heartbeat_at,
        )
        for s in repo.list_nonterminal_sessions(db)
    ]
    leases = [
        LeaseView(x.id, x.session_id, x.provider, x.activation_id, x.outcome, x.requested_at, x.retry_after)
        for x in repo.list_open_leases(db)
    ]
    containers = [
        ContainerView(c.id, c.name, c.session_id, c.role, c.state, c.created_at)
        for c in runtime.list_managed()
    ]
    run_ids = sorted({s.flow_run_id for s in sessions if s.flow_run_id})
    return Observed(
        now=now, sessions=sessions, leases=leases, containers=containers, flow_runs=flow_run_states(run_ids)
    )
