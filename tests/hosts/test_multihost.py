"""Several Docker hosts end to end: provisions placed by capacity over two real extra engines,
the gateway streaming from each, one engine stopped: one pass orphans its sessions (reason
`host <name> down`) and closes their numbers at the provider, new provisions are placed on the
host that is left."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import httpx
import pytest

from flows.provision import provision_session
from flows.reconcile import reconcile_sessions
from provisioner.runtime.table import HostsRuntime
from provisioner.steps.request import ProvisionRequest
from provisioner.store import hosts as hostrepo
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.harness.gateway import make_deps, serve
from tests.plugins.docker_hosts import engine_stopped
from tests.plugins.simulator import SIM_KEY
from tests.support import device_of

pytestmark = [pytest.mark.docker, pytest.mark.multihost]


def open_activations(sim, deps, session_ids) -> set[str]:
    with deps.sessions() as db:
        ids = {x.activation_id for sid in session_ids for x in lease_repo.leases_for_session(db, sid)}
    return ids & set(sim.ledger().open)


def test_placement_gateway_and_a_stopped_engine(provisioner_env, sim, extra_engines, runtime, monkeypatch):
    deps = provisioner_env
    monkeypatch.setenv("PROVISIONER_CODES__KEEP_NUMBER_OPEN", "true")  # numbers stay open until release
    monkeypatch.setenv("PROVISIONER_RECONCILE__HOST_DOWN_GRACE_S", "0")
    from provisioner.settings import get_settings

    get_settings.cache_clear()
    deps.settings = get_settings()
    big, small = extra_engines
    with deps.sessions.begin() as db:  # stubs take 0.5 cpus: room for 10 and 5
        hostrepo.add_host(
            db, name=big.name, stream_address=big.stream_address, cpus=5, memory_mb=8192, **big.host_fields()
        )
        hostrepo.add_host(
            db,
            name=small.name,
            **small.host_fields(),
            stream_address=small.stream_address,
            cpus=2.5,
            memory_mb=8192,
        )
    deps._runtime = HostsRuntime.from_settings(deps.settings, deps.sessions)
    sim.set_sms_delay(0.2)
    with sim.state.lock:
        sim.state.balances[SIM_KEY] = Decimal("100000")  # 13 numbers at the simulator's prices

    sessions = []
    for _ in range(12):
        result = provision_session(request=ProvisionRequest(providers=["sms_activate"], code_timeout_s=20))
        assert result.state == "verified"
        sessions.append(result.session_id)
    placed = {sid: device_of(deps, sid).host for sid in sessions}
    assert Counter(placed.values()) == {big.name: 8, small.name: 4}  # in proportion to capacity
    for engine in (big, small):
        labels = {"label": f"provisioner.instance={runtime.instance_id}"}
        assert len(engine.client.api.containers(filters=labels)) == 2 * Counter(placed.values())[engine.name]
    devices = {device_of(deps, sid).id for sid in sessions}
    # Nothing of these sessions on the worker's own engine (other tests' containers may share it).
    assert [c.name for c in runtime.list_managed() if c.device_id in devices] == []

    # The gateway has no Docker engine of these hosts: it proxies to each device's recorded route.
    app_deps = make_deps(deps.sessions, runtime, token=None)
    from provisioner.gateway.app import create_app

    with serve(create_app(app_deps)) as url:
        for host in (big.name, small.name):
            sid = next(s for s, h in placed.items() if h == host)
            page = httpx.get(f"{url}/vnc/{sid}/vnc.html", timeout=10, trust_env=False)
            assert page.status_code == 200, (host, page.text[:200])
            assert "noVNC" in page.text

        on_small = [sid for sid, host in placed.items() if host == small.name]
        on_big = [sid for sid, host in placed.items() if host == big.name]
        assert len(open_activations(sim, deps, on_small)) == 4
        with engine_stopped(small):
            # One pass marks the host down (grace 0) and orphans its sessions at once: no
            # missing-device grace; their devices are retired, their containers left on the
            # silent engine (removed as unowned when it answers again).
            summary = reconcile_sessions()
            orphans = [r for r in summary.actions if r["action"] == "orphan_session"]
            assert sorted(r["target"] for r in orphans) == sorted(on_small)
            assert {r["reason"] for r in orphans} == {f"host {small.name} down"}
            assert all("cannot be removed until its engine answers again" in r["result"] for r in orphans)
            with deps.sessions() as db:
                assert {repo.get_session(db, sid).state for sid in on_small} == {"orphaned"}
                assert {repo.get_session(db, sid).last_error for sid in on_small} == {
                    f"orphaned: host {small.name} down"
                }
                assert {repo.get_session(db, sid).state for sid in on_big} == {"verified"}
                assert hostrepo.get_host(db, small.name).state == "down"
            assert {device_of(deps, sid).state for sid in on_small} == {"retired"}
            assert open_activations(sim, deps, on_small) == set()
            assert len(open_activations(sim, deps, on_big)) == 8
            page = httpx.get(f"{url}/vnc/{on_small[0]}/vnc.html", timeout=10, trust_env=False)
            assert page.status_code == 410  # the session has ended (orphaned), never a 502
            result = provision_session(
                request=ProvisionRequest(providers=["sms_activate"], code_timeout_s=20)
            )
            assert result.state == "verified"
            assert device_of(deps, result.session_id).host == big.name
        page = httpx.get(f"{url}/vnc/{on_big[0]}/vnc.html", timeout=10, trust_env=False)
        assert page.status_code == 200
    for engine in (big, small):
        for row in engine.client.api.containers(
            all=True, filters={"label": f"provisioner.instance={runtime.instance_id}"}
        ):
            engine.client.api.remove_container(row["Id"], force=True, v=True)
