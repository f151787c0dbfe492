"""Tasks that create and end session rows."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from provisioner.prefect_api.runs import run_alive
from provisioner.steps.adopt import Adopted
from provisioner.steps.adopt import adopt_session as _adopt
from provisioner.steps.deps import get_deps
from provisioner.steps.lifecycle import EndResult, release
from provisioner.steps.request import ResolvedRequest
from tasks.retry import RETRY_POLICY


@task(name="adopt-session", cache_policy=NONE, **RETRY_POLICY)
def adopt_session(
    *, session_id: str | None, request: ResolvedRequest, flow_run_id: str, actor: str
) -> Adopted:
    """The session this flow run works on (see steps.adopt); SessionEnded if it has ended,
    RunReplaced if another live run is in charge of it."""
    adopted = _adopt(
        get_deps(),
        session_id=session_id,
        flow_run_id=flow_run_id,
        request=request,
        actor=actor,
        run_alive=run_alive,
    )
    logger = get_run_logger()
    if adopted.resumed:
        logger.info(
            "session %s is %s; resuming it from attempt %d",
            adopted.session_id,
            adopted.state,
            adopted.attempt,
        )
    else:
        logger.info(
            "session %s requested (%s, country %s)", adopted.session_id, request.service, request.country
        )
    return adopted


@task(name="release-session", cache_policy=NONE, **RETRY_POLICY)
def release_session_task(session_id: str, *, actor: str, reason: str) -> EndResult:
    result = release(get_deps(), session_id, actor=actor, reason=reason)
    get_run_logger().info(result.message)
    return result
