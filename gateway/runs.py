"""Flow runs the gateway starts through Prefect's API: provision and release deployments.

    OrchestratorError
     ├── OrchestratorUnavailable   no Prefect API configured or reachable
     └── DeploymentMissing         the deployment is not registered (run `prefect deploy --all`)

Prefect and httpx exceptions are translated here, once.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import get_current_settings

PROVISION_DEPLOYMENT = "provision/provision"
RELEASE_DEPLOYMENT = "release/release"
IDEMPOTENCY_KEY_MAX = 200


class OrchestratorError(Exception):
    """A flow run could not be created."""

    reason = "orchestrator unavailable"


class OrchestratorUnavailable(OrchestratorError):
    pass


class DeploymentMissing(OrchestratorError):
    reason = "deployment missing"

    def __init__(self, deployment: str) -> None:
        super().__init__(f"deployment {deployment} is not registered; run `prefect deploy --all`")
        self.deployment = deployment


class FlowRuns(Protocol):
    async def start(
        self, deployment: str, parameters: dict[str, Any], *, idempotency_key: str | None
    ) -> FlowRun: ...


class PrefectFlowRuns:
    """Creates flow runs of registered deployments and returns at once (timeout=0).

    The API is PREFECT_API_URL unless ``api_url`` is given (tests aim one gateway at one server).
    """

    def __init__(self, api_url: str | None = None) -> None:
        self.api_url = api_url

    async def start(
        self, deployment: str, parameters: dict[str, Any], *, idempotency_key: str | None
    ) -> FlowRun:
        api_url = self.api_url or get_current_settings().api.url
        if not api_url:
            # Without it Prefect would start a throwaway in-process server: never what we want here.
            raise OrchestratorUnavailable("PREFECT_API_URL is not set")
        try:
            async with PrefectClient(api_url) as client:
                return await arun_deployment(
                    name=deployment,
                    client=client,
                    parameters=parameters,
                    timeout=0,
                    idempotency_key=idempotency_key,
                    as_subflow=False,
                )
        except ObjectNotFound as exc:
            raise DeploymentMissing(deployment) from exc
        except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as exc:
            raise OrchestratorUnavailable(f"Prefect API: {type(exc).__name__}: {exc}") from exc
