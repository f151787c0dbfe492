"""Cancelling a running provision through Prefect's API, as the UI's Cancel button does, on the
deployed path (a real `prefect server`, `provisioner deploy`, a process worker): at each phase the
session ends `cancelled` within seconds, its number is refunded and no container is left."""

from __future__ import annotations

import time

import pytest

from provisioner.store import TERMINAL, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.values.phones import mask_phone
from tests.support import wait_for

pytestmark = pytest.mark.docker

CANCEL_BOUND_S = 30  # the worker notices a Cancelling run within seconds; generous under load


def session_row(sessions, sid):
    with sessions() as db:
        return repo.get_session(db, sid)


def artifact(prefect, key: str) -> dict | None:
    """The latest artifact with this key, read through Prefect's API (as the UI shows it)."""
    body = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}
    found = prefect.client.post("/artifacts/filter", json=body).raise_for_status().json()
    return found[0] if found else None


def table_row(markdown: str, name: str) -> str | None:
    return next((line for line in markdown.splitlines() if line.startswith(f"| {name} |")), None)


def assert_artifact_while_the_code_is_awaited(prefect, sessions, sid) -> None:
    """The session's artifact shows the rented number masked, its provider and a gateway link; a
    progress artifact tracks the code wait."""
    row = session_row(sessions, sid)
    key = f"session-{sid}"
    shown = wait_for(
        lambda: (a := artifact(prefect, key)) and "awaiting_code" in a["data"] and a["data"], timeout=15
    )
    assert table_row(shown, "Phone") == f"| Phone | {mask_phone(row.phone_number)} |", shown
    assert row.phone_number[-4:] in shown and row.phone_number not in shown
    assert table_row(shown, "Provider") == "| Provider | sms_activate |"
    assert table_row(shown, "Code") == "| Code | waiting |"
    assert f"/s/{sid}" in table_row(shown, "Session page")
    assert row.stream_url not in shown  # the published port is never linked
    progress = artifact(prefect, f"{key}-code")
    assert progress is not None and progress["type"] == "progress", progress
    assert 0 <= float(progress["data"]) < 100


def cancel_like_the_ui(prefect, run_id: str) -> None:
    """The UI's Cancel: the run is set Cancelling; the worker stops its process and runs the hooks."""
    reply = prefect.client.post(
        f"/flow_runs/{run_id}/set_state", json={"state": {"type": "CANCELLING", "name": "Cancelling"}}
    )
    assert reply.raise_for_status().json()["status"] == "ACCEPT", reply.text


def booting(sim, sessions, runtime, sid) -> bool:
    row = session_row(sessions, sid)
    return row.state == State.LAUNCHING and any(
        c.device_id == row.device_id for c in runtime.list_managed() if row.device_id
    )


def waiting_for_a_number(sim, sessions, runtime, sid) -> bool:
    asked = any(action in ("getNumber", "getNumberV2") for _, action, _ in sim.calls)
    return asked and session_row(sessions, sid).state == State.AWAITING_NUMBER


def waiting_for_the_code(sim, sessions, runtime, sid) -> bool:
    return session_row(sessions, sid).state == State.AWAITING_CODE


PHASES = {
    # a 45 s boot (stub-slow): cancelled while its device container runs but is not ready
    "booting": ({"device_profile": "stub-slow"}, booting),
    # every provider says "no numbers": the flow backs off and asks again
    "number": ({}, waiting_for_a_number),
    # the simulator sends no SMS until told to
    "code": ({}, waiting_for_the_code),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_cancel_from_prefect_ends_the_session_cancelled_and_cleans_up(
    phase, prefect, start_worker, gateway_for, db_sessions, database_url, runtime_factory, sim
):
    request, reached = PHASES[phase]
    runtime = runtime_factory()
    start_worker(database_url, runtime)
    client = gateway_for(db_sessions, runtime)
    sim.set_sms_delay(None)
    if phase == "number":
        sim.inject("no_numbers", action="getNumber", times=None)
        sim.inject("no_numbers", action="getNumberV2", times=None)
    created = client.post("/sessions", json={"providers": ["sms_activate"], **request})
    assert created.status_code == 202, created.text
    sid, run_id = created.json()["session_id"], created.json()["flow_run_id"]
    wait_for(lambda: reached(sim, db_sessions, runtime, sid), timeout=120, interval=0.3)

    if phase == "booting":
        assert artifact(prefect, f"session-{sid}-boot")["type"] == "progress"
    if phase == "code":
        assert_artifact_while_the_code_is_awaited(prefect, db_sessions, sid)

    cancel_like_the_ui(prefect, run_id)
    asked_at = time.monotonic()
    wait_for(
        lambda: State(session_row(db_sessions, sid).state) in TERMINAL, timeout=CANCEL_BOUND_S, interval=0.3
    )
    took = time.monotonic() - asked_at
    row = session_row(db_sessions, sid)
    print(f"{phase}: session {row.state} {took:.1f} s after the cancel ({row.last_error})")
    assert row.state == State.CANCELLED, row.last_error
    assert prefect.wait_final(run_id, timeout=CANCEL_BOUND_S) == "CANCELLED"
    wait_for(lambda: runtime.list_managed() == [], timeout=10)
    ledger = sim.ledger()
    assert ledger.settled, ledger
    if phase == "code":
        assert len(ledger.purchases) == 1 and len(ledger.refunds) == 1, ledger
    else:
        assert ledger.purchases == [], ledger
    with db_sessions() as db:
        assert [x.id for x in lease_repo.list_open_leases(db) if x.session_id == sid] == []
    final = artifact(prefect, f"session-{sid}")["data"]  # published by the worker's hook
    assert "**cancelled**" in final and table_row(final, "Reason"), final
    assert table_row(final, "Session page") == "| Session page | - |"
    assert table_row(final, "Code") == "| Code | none |"
