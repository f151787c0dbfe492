"""The gateway's flow runs (provision and release deployments), on Prefect's async client.

    OrchestratorError
     ├── OrchestratorUnavailable   no Prefect API configured or reachable
     └── DeploymentMissing         the deployment is not registered (run `prefect deploy --all`)

Prefect and httpx exceptions are translated here, once.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_API_AUTH_STRING, get_current_settings
from prefect.states import Cancelled

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


# A flow run in one of these has not started its work: cancelling it loses nothing.
NOT_STARTED = frozenset({StateType.SCHEDULED, StateType.PENDING})


class FlowRuns(Protocol):
    async def start(
        self, deployment: str, parameters: dict[str, Any], *, idempotency_key: str | None
    ) -> FlowRun: ...

    async def cancel_unstarted(self, run_id: str) -> bool:
        """Cancel the run if it has not started (or does not exist): True; False when it runs."""
        ...


class PrefectFlowRuns:
    """Creates flow runs of registered deployments and returns at once (timeout=0).

    The API is PREFECT_API_URL unless ``api_url`` is given (tests aim one gateway at one server).
    """

    def __init__(self, api_url: str | None = None) -> None:
        self.api_url = api_url

    def _api_url(self) -> str:
        api_url = self.api_url or get_current_settings().api.url
        if not api_url:
            # Without it Prefect would start a throwaway in-process server: never what we want here.
            raise OrchestratorUnavailable("PREFECT_API_URL is not set")
        return api_url

    def _client(self) -> PrefectClient:
        """A client of the API, signed in when the server wants a login (PREFECT_API_AUTH_STRING)."""
        return PrefectClient(self._api_url(), auth_string=PREFECT_API_AUTH_STRING.value())

    async def cancel_unstarted(self, run_id: str) -> bool:
        try:
            run_uuid = UUID(run_id)
        except ValueError:
            return True  # not a Prefect run id: nothing there to cancel
        try:
            async with self._client() as client:
                try:
                    run = await client.read_flow_run(run_uuid)
                except ObjectNotFound:
                    return True
                if run.state is None or run.state.type in NOT_STARTED:
                    result = await client.set_flow_run_state(
                        run_uuid, Cancelled(message="session cancelled before its run started")
                    )
                    return result.state is not None and result.state.type == StateType.CANCELLED
                return run.state.type == StateType.CANCELLED
        except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as exc:
            raise OrchestratorUnavailable(f"Prefect API: {type(exc).__name__}") from exc

    async def start(
        self, deployment: str, parameters: dict[str, Any], *, idempotency_key: str | None
    ) -> FlowRun:
        try:
            async with self._client() as client:
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
