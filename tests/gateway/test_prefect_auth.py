"""Prefect's API behind its login (compose's PREFECT_API_AUTH_STRING): the server refuses a
caller without it, and the gateway's client of it signs in."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

from provisioner.prefect_api.orchestrator import OrchestratorUnavailable, PrefectFlowRuns
from tests.harness.deployed import prefect_server

LOGIN = "admin:pf-" + uuid.uuid4().hex[:12]


def test_the_api_wants_the_login_and_the_gateway_has_it(tmp_path) -> None:
    with prefect_server(tmp_path, server_env={"PREFECT_SERVER_API_AUTH_STRING": LOGIN}) as (api_url, _):
        anonymous = httpx.post(f"{api_url}/flow_runs/filter", json={}, timeout=10, trust_env=False)
        assert anonymous.status_code == 401
        runs = PrefectFlowRuns(api_url=api_url)
        unknown_run = str(uuid.uuid4())
        with temporary_settings({PREFECT_API_AUTH_STRING: None}), pytest.raises(OrchestratorUnavailable):
            asyncio.run(runs.cancel_unstarted(unknown_run))
        with temporary_settings({PREFECT_API_AUTH_STRING: LOGIN}):
            assert asyncio.run(runs.cancel_unstarted(unknown_run)) is True  # no such run: nothing to cancel
