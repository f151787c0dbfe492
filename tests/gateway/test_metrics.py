"""GET /metrics: Prometheus text derived from real rows in PostgreSQL at scrape time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from provisioner.reconciler.model import Kind
from provisioner.settings.version import VERSION
from provisioner.store import LeaseOutcome, State, new_session_id
from provisioner.store import leases as lease_repo
from tests.harness.gateway import TOKEN

pytestmark = pytest.mark.docker


def scrape(gw, headers=None) -> dict[str, dict[tuple, float]]:
    reply = gw.client.get("/metrics", headers=headers or {})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def lease(db, session_id, *, price=None, outcome=None, status=None):
    row = lease_repo.record_lease_pending(
        db, session_id, provider="sms_man", service="3", country="1", attempt=1
    )
    if price is not None:
        lease_repo.complete_lease(
            db,
            row.id,
            lease_repo.BoughtNumber(
                activation_id=f"a{row.id}",
                phone="+79001234567",
                price=Decimal(price),
                currency="RUB",
                bought_at=datetime.now(UTC),
            ),
        )
    if outcome is not None:
        lease_repo.set_lease_outcome(db, row.id, outcome, provider_status=status)


def test_metrics_families_from_the_store(gateway_factory, make_session, db_sessions) -> None:
    gw = gateway_factory(token=TOKEN)
    assert gw.client.get("/metrics").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    empty = scrape(gw, auth)
    assert empty["provisioner_sessions"][(("state", "verified"),)] == 0
    assert empty["provisioner_build_info"][(("version", VERSION),)] == 1

    verified = [make_session(State.VERIFIED) for _ in range(2)]
    failed = make_session(State.FAILED)
    make_session(State.AWAITING_CODE)
    with db_sessions.begin() as db:
        lease(db, verified[0], price="12.5", outcome=LeaseOutcome.FINISHED, status="finished")
        lease(db, verified[1], price="7.5", outcome=LeaseOutcome.FINISHED, status="finished")
        lease(db, verified[1], price="99", outcome=LeaseOutcome.CANCELLED, status="cancelled")  # refunded
        lease(db, failed, outcome=LeaseOutcome.FAILED, status="ProviderUnavailable: HTTP 503")

    m = scrape(gw, auth)
    assert m["provisioner_sessions"][(("state", "verified"),)] == 2
    assert m["provisioner_sessions"][(("state", "awaiting_code"),)] == 1
    assert m["provisioner_sessions"][(("state", "failed"),)] == 1
    provisions = m["provisioner_provisions_total"]
    assert provisions[(("outcome", "started"), ("provider", "sms_man"), ("reason", ""))] == 3
    assert provisions[(("outcome", "started"), ("provider", "none"), ("reason", ""))] == 1
    assert provisions[(("outcome", "verified"), ("provider", "sms_man"), ("reason", ""))] == 2
    assert provisions[(("outcome", "failed"), ("provider", "none"), ("reason", "test"))] == 1
    assert m["provisioner_provision_duration_seconds_count"][()] == 2
    assert m["provisioner_provision_duration_seconds_bucket"][(("le", "+Inf"),)] == 2
    assert m["provisioner_provision_duration_seconds_bucket"][(("le", "1.0"),)] == 2  # made at once
    assert m["provisioner_code_wait_duration_seconds_count"][()] == 2
    kinds = {(("kind", kind.value),): 0 for kind in Kind}  # every kind, before any pass
    assert (m["provisioner_reconcile_actions_total"], m["provisioner_reconcile_action_failures_total"]) == (
        kinds,
        kinds,
    )
    assert m["provisioner_provider_errors_total"] == {
        (("error", "ProviderUnavailable"), ("provider", "sms_man")): 1
    }
    assert m["provisioner_spend_total"] == {(("currency", "RUB"), ("provider", "sms_man")): 20.0}
    assert m["provisioner_refunds_total"] == {(("currency", "RUB"), ("provider", "sms_man")): 99.0}


def test_device_pool_sizes_by_profile_and_state(gateway_factory, db_sessions) -> None:
    from provisioner.store.models import DeviceRow

    gw = gateway_factory()
    with db_sessions.begin() as db:
        for n, (profile, state) in enumerate(
            [("stub", "idle"), ("stub", "idle"), ("stub", "claimed"), ("android", "booting")]
        ):
            db.add(
                DeviceRow(
                    profile=profile,
                    host="local",
                    state=state,
                    device_container=f"d{n}",
                    stream_container=f"s{n}",
                )
            )
    devices = scrape(gw)["provisioner_devices"]  # (the db fixture empties the devices table afterwards)
    assert devices[(("profile", "stub"), ("state", "idle"))] == 2
    assert devices[(("profile", "stub"), ("state", "claimed"))] == 1
    assert devices[(("profile", "stub"), ("state", "booting"))] == 0
    assert devices[(("profile", "android"), ("state", "booting"))] == 1
    assert devices[(("profile", "android"), ("state", "idle"))] == 0


def test_a_reconcile_pass_removing_a_network_is_counted_by_kind(
    provisioner_env, gateway_factory, runtime
) -> None:
    """A network removal writes no session event: the pass's own counts put it on /metrics."""
    from flows.reconcile import reconcile_sessions
    from provisioner.runtime.isolation import ensure_pair_network, pair_network_name

    gone = new_session_id()  # a boot that crashed after creating its pair network
    ensure_pair_network(runtime.client, runtime.instance_id, gone)
    grace_s = provisioner_env.settings.reconcile.grace_s
    time.sleep(grace_s + 0.1)  # the network outlives the grace (the pass's removal follows)
    summary = reconcile_sessions()
    assert [(r["action"], r["target"], r["result"]) for r in summary.actions] == [
        ("remove_network", pair_network_name(runtime.instance_id, gone), "removed")
    ]
    reconcile_sessions()  # nothing to do: counts nothing

    m = scrape(gateway_factory())
    actions = m["provisioner_reconcile_actions_total"]
    assert actions == {(("kind", kind.value),): int(kind == Kind.REMOVE_NETWORK) for kind in Kind}
    assert set(m["provisioner_reconcile_action_failures_total"].values()) == {0}
