"""POST /sessions claims an idle pool device while accepting: the stream is usable at once."""

from __future__ import annotations

import time

import pytest

from provisioner.steps.boot import boot_device
from provisioner.store import State
from provisioner.store import devices as devrepo
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo

pytestmark = pytest.mark.docker

PROFILE = "stub-boot"  # status-file readiness like stub-slow and android; boots in 2 s


@pytest.fixture
def warm(gw):
    """An idle device of PROFILE; its containers are removed after the test (the session's runtime
    is shared by later tests, which must not see them)."""
    device = boot_device(gw.deps, PROFILE, reason="warm pool")
    yield device
    gw.deps.runtime.remove_device(device.id)


def test_post_claims_a_warm_device_and_the_stream_answers_at_once(gw, warm) -> None:
    started = time.monotonic()
    created = gw.client.post("/sessions", json={"providers": ["sms_activate"], "device_profile": PROFILE})
    stream = gw.client.get(f"/sessions/{created.json()['session_id']}/stream")
    elapsed = time.monotonic() - started
    assert created.status_code == 202, created.text
    sid = created.json()["session_id"]
    assert created.json()["stream_url"].startswith(f"http://gateway.test/vnc/{sid}/vnc.html")
    assert stream.status_code == 200, stream.text
    assert elapsed < 1.0
    with gw.deps.sessions() as db:
        row = repo.get_session(db, sid)
        assert (row.state, row.device_id) == (State.AWAITING_NUMBER, warm.id)
        assert devrepo.get_device(db, warm.id).state == "claimed"
        assert lease_repo.leases_for_session(db, sid) == []  # the number comes later, from the flow run
    (run,) = gw.runs.started
    assert run[1]["session_id"] == sid  # the flow run adopts the session and its device


def test_without_an_idle_device_the_run_is_started_for_a_session_with_no_device(gw) -> None:
    """Nothing to claim: the session waits for its provision run (which boots a device) holding none."""
    created = gw.client.post("/sessions", json={"providers": ["sms_activate"], "device_profile": PROFILE})
    assert created.status_code == 202 and "stream_url" not in created.json()
    sid = created.json()["session_id"]
    with gw.deps.sessions() as db:
        row = repo.get_session(db, sid)
        assert (row.state, row.device_id) == (State.REQUESTED, None)
        assert devrepo.list_live_devices(db) == []
    (run,) = gw.runs.started
    assert (run[0], run[1]["session_id"]) == ("provision/executor", sid)
    assert run[1]["request"]["device_profile"] == PROFILE
    assert gw.client.get(f"/sessions/{sid}/stream").json()["reason"] == "provisioning"
