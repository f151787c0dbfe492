"""Cooperative cancellation's question (prefect_api.runs.cancel_requested) to the test harness's
Prefect API about a real flow run (named as a flow-run process names its own, by
PREFECT__FLOW_RUN_ID): a run set Cancelling says so, and an API that refuses connections is not a
cancel (the provision goes on and asks again at its next check)."""

from __future__ import annotations

import logging

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from provisioner.prefect_api.runs import cancel_requested
from tests.harness.services import free_port


@flow
def idle() -> None:
    pass


def test_cancel_requested_asks_the_api_and_an_api_down_is_no_cancel(prefect_api, monkeypatch, caplog) -> None:
    assert cancel_requested() is False  # no current run: nothing is asked
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(idle)
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", str(run.id))
    assert cancel_requested() is False
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
    assert cancel_requested() is True

    # Nothing listens on this port: the connection is refused.
    with (
        temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}),
        caplog.at_level(logging.WARNING, logger="provisioner.prefect_api.runs"),
    ):
        assert cancel_requested() is False
    said = [r.getMessage() for r in caplog.records if r.name == "provisioner.prefect_api.runs"]
    assert len(said) == 1 and f"could not ask the Prefect API whether run {run.id} was cancelled" in said[0]
