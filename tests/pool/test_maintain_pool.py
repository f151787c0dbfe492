"""maintain-pool and warm claims on real PostgreSQL, Docker, Prefect and the provider simulator."""

from __future__ import annotations

import pytest

from flows.maintain_pool import PoolSummary, maintain_pool
from flows.provision import ProvisionResult, provision_session
from flows.release import release_session
from provisioner.steps.request import ProvisionRequest
from provisioner.store import devices as devrepo
from provisioner.store import repository as repo
from tests.support import device_of

pytestmark = pytest.mark.docker

PROFILE = "stub-boot"  # stub-slow's readiness (status file), booting in 2 s


@pytest.fixture
def warm_env(provisioner_env, monkeypatch):
    from provisioner.settings import get_settings
    from provisioner.steps.deps import get_deps, reset_deps

    monkeypatch.setenv("PROVISIONER_POOL__WARM", f'{{"{PROFILE}": 1}}')
    get_settings.cache_clear()
    reset_deps()
    return get_deps()


def idle_devices(deps) -> list[str]:
    with deps.sessions() as db:
        return [
            row.id for row, holder in devrepo.list_live_devices(db) if row.state == "idle" and holder is None
        ]


def test_pool_fills_a_provision_claims_warm_and_release_destroys_it_then_the_pool_refills(
    warm_env, sim, runtime
):
    deps = warm_env
    sim.set_sms_delay(0.2)
    first = maintain_pool()
    assert isinstance(first, PoolSummary) and first.wanted == {PROFILE: 1}
    assert [(a["action"], a["result"].endswith("idle")) for a in first.actions] == [("boot", True)]
    (warm,) = idle_devices(deps)
    assert maintain_pool().actions == []  # full: nothing to do

    result = provision_session(request=ProvisionRequest(providers=["sms_activate"], device_profile=PROFILE))
    assert isinstance(result, ProvisionResult) and result.state == "verified"
    device = device_of(deps, result.session_id)
    assert (device.id, device.state) == (warm, "claimed")
    with deps.sessions() as db:
        events = repo.recent_events(db, result.session_id)
    assert [e.to_state for e in events][:2] == ["requested", "awaiting_number"]  # no cold boot
    assert events[1].reason == f"claimed warm device {warm}"

    refill = maintain_pool()
    assert [a["action"] for a in refill.actions] == ["boot"]
    (fresh,) = idle_devices(deps)
    assert fresh != warm

    release_session(session_id=result.session_id)
    assert device_of(deps, result.session_id).state == "retired"  # never back to the pool
    assert [c for c in runtime.list_managed() if c.device_id == warm] == []
    assert idle_devices(deps) == [fresh]
    assert sim.ledger().settled


def test_unhealthy_idle_device_is_retired_by_the_device_down_rule_then_replaced(
    provisioner_env, runtime, monkeypatch
):
    """The pool leaves a down device to reconciliation's device-down rule (the same as for a
    session's device): noted on one pass, retired on a later one past the grace, then refilled."""
    from flows.reconcile import reconcile_sessions
    from provisioner.settings import get_settings
    from provisioner.steps.deps import get_deps, reset_deps
    from tests.support import wait_for

    monkeypatch.setenv("PROVISIONER_POOL__WARM", f'{{"{PROFILE}": 1}}')
    monkeypatch.setenv("PROVISIONER_RECONCILE__UNHEALTHY_GRACE_S", "0")
    get_settings.cache_clear()
    reset_deps()
    deps = get_deps()
    maintain_pool()
    (hung,) = idle_devices(deps)
    # Its VNC server freezes now that its stream is ready (stub-hang's timer, 3 s after READY, raced
    # the stream's readiness on a loaded machine); the container keeps running.
    device = runtime.client.containers.get(deps.runtime.name_for(hung, "device"))
    frozen = device.exec_run(["sh", "-c", "kill -STOP $(pidof x11vnc)"])
    assert frozen.exit_code == 0, frozen.output
    wait_for(
        lambda: any(c.device_id == hung and c.health == "unhealthy" for c in runtime.list_managed()),
        timeout=30,
    )
    assert maintain_pool().actions == []  # no retirement nor second boot of its own
    passes = [reconcile_sessions(), reconcile_sessions()]
    assert [[(a["action"], a["target"]) for a in p.actions] for p in passes] == [
        [("mark_device_down", f"device {hung}")],
        [("retire_device", f"device {hung}")],
    ]
    assert passes[1].actions[0]["reason"].startswith("device unhealthy for ")
    with deps.sessions() as db:
        assert devrepo.get_device(db, hung).state == "retired"
    assert [a["action"] for a in maintain_pool().actions] == ["boot"]
    assert hung not in idle_devices(deps) and len(idle_devices(deps)) == 1
