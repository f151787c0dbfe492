"""A flow run owns at most one session: running the *same* flow run again (what Prefect does on a
UI "Retry" or a restarted crashed run) resumes its session or ends at once; it never buys again."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import Crashed, Scheduled

from flows.provision import ProvisionResult, provision_session
from flows.release import release_session
from provisioner.prefect_api.runs import run_alive
from provisioner.steps.adopt import adopt_session
from provisioner.steps.request import ProvisionRequest, resolve
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


def test_a_run_replaced_by_a_live_one_leaves_the_session_alone(provisioner_env, sim):
    """Reconciliation judged a run dead (left Pending) and re-submitted its session; the old run's
    process starts late after all: it must not take the session from the live run in charge."""
    deps = provisioner_env
    request = ProvisionRequest(providers=["sms_activate"]).model_dump(exclude_none=True)
    in_charge = new_run({"request": request})  # Scheduled: alive
    with deps.sessions.begin() as db:
        sid = repo.create_session(
            db, service="telegram", country="RU", actor="test", flow_run_id=str(in_charge.id)
        ).id
    parameters = {"request": request, "session_id": sid}
    late = new_run(parameters)
    state = run_flow(provision_session, flow_run=late, parameters=parameters, return_type="state")
    assert state.is_failed() and f"in the charge of flow run {in_charge.id}" in state.message
    with deps.sessions() as db:
        row = repo.get_session(db, sid)
    assert (row.flow_run_id, row.state, row.submissions) == (str(in_charge.id), State.REQUESTED, 1)
    assert sim.purchases == 0

    with get_client(sync_client=True) as client:  # the one in charge ended: resuming is allowed
        client.set_flow_run_state(in_charge.id, Crashed(message="test"), force=True)
    adopted = adopt_session(
        deps,
        session_id=sid,
        flow_run_id=str(late.id),
        request=resolve(ProvisionRequest(providers=["sms_activate"]), deps.settings),
        actor="test",
        run_alive=run_alive,
    )
    with deps.sessions() as db:
        assert (adopted.session_id, repo.get_session(db, sid).flow_run_id) == (sid, str(late.id))
