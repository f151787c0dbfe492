"""A flow run owns at most one session: running the *same* flow run again (what Prefect does on a
UI "Retry" or a restarted crashed run) resumes its session or ends at once; it never buys again."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import Scheduled

from flows.provision import ProvisionResult, provision_session
from flows.release import release_session
from provisioner.steps.request import ProvisionRequest
from provisioner.store import State
from provisioner.store import repository as repo

pytestmark = pytest.mark.docker


def new_run(parameters: dict):
    with get_client(sync_client=True) as client:
        return client.create_flow_run(provision_session, parameters=parameters)


def rerun(flow_run):
    """The same flow run again, as Prefect's Retry does: back to Scheduled, then executed."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Scheduled(), force=True)
        fresh = client.read_flow_run(flow_run.id)
    return run_flow(provision_session, flow_run=fresh, parameters=fresh.parameters, return_type="state")


def sessions_of(deps, flow_run_id: str):
    with deps.sessions() as db:
        return [s for s in repo.list_sessions(db) if s.flow_run_id == flow_run_id]


def test_rerun_of_a_verified_run_returns_its_session_and_buys_nothing(provisioner_env, sim):
    deps = provisioner_env
    sim.set_sms_delay(0.2)
    parameters = {"request": ProvisionRequest(providers=["sms_activate"]).model_dump(exclude_none=True)}
    flow_run = new_run(parameters)
    first = run_flow(provision_session, flow_run=flow_run, parameters=parameters, return_type="state")
    assert first.is_completed()
    result: ProvisionResult = first.result()
    assert result.state == "verified" and sim.purchases == 1

    again = rerun(flow_run)
    assert again.is_completed() and again.result().session_id == result.session_id
    assert sim.purchases == 1
    assert [s.id for s in sessions_of(deps, str(flow_run.id))] == [result.session_id]


def test_rerun_of_a_run_whose_session_ended_ends_at_once(provisioner_env, sim):
    deps = provisioner_env
    sim.set_sms_delay(0.2)
    parameters = {"request": ProvisionRequest(providers=["sms_activate"]).model_dump(exclude_none=True)}
    flow_run = new_run(parameters)
    result = run_flow(provision_session, flow_run=flow_run, parameters=parameters)
    release_session(session_id=result.session_id)

    again = rerun(flow_run)
    assert again.is_failed() and "already ended" in again.message
    assert sim.purchases == 1
    assert [(s.id, s.state) for s in sessions_of(deps, str(flow_run.id))] == [
        (result.session_id, State.RELEASED)
    ]
