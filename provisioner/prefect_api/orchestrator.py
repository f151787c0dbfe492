"""The gateway's flow runs (provision and release deployments), on Prefect's async client.

    OrchestratorError
     ├── OrchestratorUnavailable   no Prefect API configured or reachable
     ├── DeploymentMissing         the deployment is not registered (run `prefect deploy --all`)
     └── ParametersRejected        the deployment's parameter schema refused the run (409/422)

Prefect and httpx exceptions are translated here, once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import arun_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_API_AUTH_STRING, get_current_settings
from prefect.states import Cancelled

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 200


class OrchestratorError(Exception):
    """A flow run could not be created. ``status``: the HTTP status a client gets; ``retryable``:
    whether the same request can succeed later."""

    reason = "orchestrator unavailable"
    status = 503
    retryable = True


class OrchestratorUnavailable(OrchestratorError):
    pass


class DeploymentMissing(OrchestratorError):
    reason = "deployment missing"

    def __init__(self, deployment: str) -> None:
        super().__init__(f"deployment {deployment} is not registered; run `prefect deploy --all`")
        self.deployment = deployment


class ParametersRejected(OrchestratorError):
    """Prefect refused the run's parameters (the deployment's parameter schema): no run exists.
    The message names the parameter, never its value (Prefect's reason echoes it: ``why``)."""

    reason = "parameters rejected"
    status = 422
    retryable = False

    def __init__(self, deployment: str, parameter: str | None, why: str) -> None:
        named = f"parameter {parameter!r}" if parameter else "the run's parameters"
        super().__init__(f"deployment {deployment}'s parameter schema rejected {named}")
        self.parameter = parameter
        self.why = why


# Prefect's schema validation message: "... Validation failed for field 'a.b'. Failure reason: ..."
_FIELD = re.compile(r"Validation failed(?: for field '(?P<field>[^']+)')?")


def rejection(deployment: str, exc: PrefectHTTPStatusError) -> ParametersRejected | None:
    """The run's parameters refused by the deployment's schema (409/422 from create), else None."""
    if exc.response.status_code not in (409, 422):
        return None
    try:
        detail = str(exc.response.json().get("detail", ""))
    except ValueError:
        detail = exc.response.text
    found = _FIELD.search(detail)
    return ParametersRejected(deployment, found["field"] if found else None, detail[:500])


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
    Each call gives up after ``timeout_s`` (Prefect's client would otherwise wait and retry for
    minutes): OrchestratorUnavailable, and a client's retry with its key finds the same run.
    """

    def __init__(self, api_url: str | None = None, timeout_s: float = 30.0) -> None:
        self.api_url = api_url
        self.timeout_s = timeout_s

    def _too_slow(self) -> OrchestratorUnavailable:
        return OrchestratorUnavailable(f"Prefect API did not answer within {self.timeout_s:g} s")

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
            async with asyncio.timeout(self.timeout_s), self._client() as client:
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
        except TimeoutError as exc:
            raise self._too_slow() from exc
        except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as exc:
            raise OrchestratorUnavailable(f"Prefect API: {type(exc).__name__}") from exc

    async def start(
        self, deployment: str, parameters: dict[str, Any], *, idempotency_key: str | None
    ) -> FlowRun:
        try:
            async with asyncio.timeout(self.timeout_s), self._client() as client:
                return await arun_deployment(
                    name=deployment,
                    client=client,
                    parameters=parameters,
                    timeout=0,
                    idempotency_key=idempotency_key,
                    as_subflow=False,
                )
        except TimeoutError as exc:
            raise self._too_slow() from exc
        except ObjectNotFound as exc:
            raise DeploymentMissing(deployment) from exc
        except PrefectHTTPStatusError as exc:
            rejected = rejection(deployment, exc)
            if rejected is not None:
                log.warning("%s: %s", rejected, rejected.why)
                raise rejected from exc
            raise OrchestratorUnavailable(f"Prefect API: {type(exc).__name__}: {exc}") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise OrchestratorUnavailable(f"Prefect API: {type(exc).__name__}: {exc}") from exc
