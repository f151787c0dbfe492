"""release: remove a session's containers, close its number, mark it released. Idempotent."""

from __future__ import annotations

import re

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from provisioner.settings.version import VERSION
from provisioner.store import SESSION_ID_PATTERN
from tasks.publish import label_flow_run, publish_session
from tasks.sessions import release_session_task


@flow(name="release", description="Release a session: containers removed, number finished or cancelled.")
def release_session(session_id: str, reason: str = "released on request") -> str:
    logger = get_run_logger()
    logger.info("provisioner %s", VERSION)
    if not re.match(SESSION_ID_PATTERN, session_id):
        raise ValueError(f"{session_id!r} is not a session id")
    label_flow_run("release", session_id)
    actor = f"flow-run:{flow_run.id}" if flow_run.id else "flow-run:local"
    result = release_session_task(session_id, actor=actor, reason=reason)
    if result.changed:
        publish_session(session_id)
    else:
        logger.info("%s: nothing to do", result.message)
    return result.message
