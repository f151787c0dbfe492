"""The provision's first step: the cheap checks that must pass before any money is spent."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from provisioner.steps.checks import check_before_spending, check_budget
from provisioner.steps.deps import get_deps
from provisioner.steps.request import ResolvedRequest
from tasks.retry import RETRY_POLICY


@task(name="check-before-spending", cache_policy=NONE, **RETRY_POLICY)
def check_request(plan: ResolvedRequest, session_id: str) -> None:
    check_budget(get_deps(), session_id, plan)
    check_before_spending(get_deps(), plan)
    get_run_logger().info("budget, profile %s, Docker engine and images ready", plan.device_profile)
