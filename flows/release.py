"""release: remove a session's containers, close its number, mark it released. Idempotent."""

from __future__ import annotations

import re

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from provisioning.deps import get_deps
from provisioning.lifecycle import release
from store import SESSION_ID_PATTERN
from tasks.publish import publish_session


@flow(name="release", description="Release a session: containers removed, number finished or cancelled.")
def release_session(session_id: str, reason: str = "released on request") -> str:
    if not re.match(SESSION_ID_PATTERN, session_id):
        raise ValueError(f"{session_id!r} is not a session id")
    actor = f"flow-run:{flow_run.id}" if flow_run.id else "flow-run:local"
    result = release(get_deps(), session_id, actor=actor, reason=reason)
    if result.changed:
        publish_session(session_id)
    get_run_logger().info(result.message if result.changed else f"{result.message}: nothing to do")
    return result.message
