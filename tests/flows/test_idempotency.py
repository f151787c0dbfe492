"""A retried step or a re-run flow finds what it already made: one purchase, one pair of containers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows.provision import provision_session
from provisioner.steps.boot import boot_session_device
from provisioner.steps.devices import claim_device
from provisioner.steps.numbers import rent_number
from provisioner.steps.request import ProvisionRequest, RentRequest
from provisioner.store import State
from provisioner.store import repository as repo

pytestmark = pytest.mark.docker


def new_session(deps) -> str:
    with deps.sessions.begin() as db:
        return repo.create_session(
            db, service="telegram", country="RU", actor="test", ttl=timedelta(minutes=5)
        ).id


def test_renting_twice_for_the_same_attempt_buys_once(provisioner_env, sim):
    deps = provisioner_env
    sid = new_session(deps)
    rent = RentRequest("telegram", "RU", ("sms_activate",))
    first = rent_number(deps, sid, rent, attempt=1, actor="t")
    again = rent_number(deps, sid, rent, attempt=1, actor="t")
    assert again == first
    assert sim.purchases == 1
    second = rent_number(deps, sid, rent, attempt=2, actor="t")
    assert second.activation_id != first.activation_id and sim.purchases == 2


def test_booting_twice_starts_one_pair(provisioner_env, runtime):
    deps = provisioner_env
    sid = new_session(deps)
    assert claim_device(deps, sid, profile="stub", actor="t") is None  # the pool is empty
    first = boot_session_device(deps, sid, profile="stub", actor="t")
    ids = sorted(c.id for c in runtime.list_managed() if c.device_id == first.id)
    again = boot_session_device(deps, sid, profile="stub", actor="t")
    assert again.id == first.id
    assert sorted(c.id for c in runtime.list_managed() if c.device_id == first.id) == ids and len(ids) == 2
    assert claim_device(deps, sid, profile="stub", actor="t").id == first.id  # a re-run adopts it
    with deps.sessions() as db:
        row = repo.get_session(db, sid)
        assert (row.state, row.device_id) == (State.AWAITING_NUMBER, first.id)


def test_rerun_of_an_ended_session_is_refused(provisioner_env, sim):
    deps = provisioner_env
    sid = new_session(deps)
    with deps.sessions.begin() as db:
        repo.transition(db, sid, State.FAILED, reason="earlier failure", actor="t")
    state = provision_session(
        request=ProvisionRequest(providers=["sms_activate"]), session_id=sid, return_state=True
    )
    assert state.is_failed() and "already ended" in state.message
    assert sim.purchases == 0
