"""Tasks that create and end session rows."""

from __future__ import annotations

from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from provisioning.deps import get_deps
from provisioning.lifecycle import EndResult, release
from store import TERMINAL, State
from store import repository as repo
from store.repository import SessionEnded
from tasks.retry import RETRY_POLICY


@task(name="create-session", cache_policy=NONE, **RETRY_POLICY)
def create_session(
    *,
    session_id: str | None,
    service: str,
    country: str,
    profile: str,
    ttl_s: float,
    flow_run_id: str,
    actor: str,
) -> str:
    """Insert the session row (state requested); a re-run with the same id finds the existing one."""
    deps = get_deps()
    with deps.sessions.begin() as db:
        if session_id and (existing := repo.find_session(db, session_id)):
            if State(existing.state) in TERMINAL:
                raise SessionEnded(session_id, existing.state)
            get_run_logger().info("session %s exists (%s); resuming it", session_id, existing.state)
            if not existing.flow_run_id:
                repo.update_session(db, session_id, flow_run_id=flow_run_id)
            return session_id
        row = repo.create_session(
            db,
            service=service,
            country=country,
            device_profile=profile,
            flow_run_id=flow_run_id,
            ttl=timedelta(seconds=ttl_s),
            actor=actor,
            session_id=session_id,
        )
        get_run_logger().info("session %s requested (%s, country %s)", row.id, service, country)
        return row.id


@task(name="release-session", cache_policy=NONE, **RETRY_POLICY)
def release_session_task(session_id: str, *, actor: str, reason: str) -> EndResult:
    result = release(get_deps(), session_id, actor=actor, reason=reason)
    get_run_logger().info(result.message)
    return result
