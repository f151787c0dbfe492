"""The pool's demand observed on the real database: claims in the window and the p90 boot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, update

from provisioner.pool import Demand, Sizing, pool_targets
from provisioner.runtime.profiles import builtin_profiles
from provisioner.store import DeviceState
from provisioner.store import devices as devrepo
from provisioner.store.models import DeviceRow
from tests.store.rows import make_device, make_session

PROFILES = builtin_profiles()
SIZING = Sizing(window_s=600, headroom=0.5)


def booted(db, boot_s: float, *, profile: str = "stub-slow", ready_ago_s: float = 0) -> str:
    device_id = make_device(db, profile=profile, state=DeviceState.BOOTING)
    ready = func.now() - timedelta(seconds=ready_ago_s)
    db.execute(
        update(DeviceRow)
        .where(DeviceRow.id == device_id)
        .values(state="idle", boot_s=boot_s, ready_at=ready, created_at=ready)
    )
    db.commit()
    return device_id


def claim(db, *, profile: str = "stub-slow") -> str:
    row = devrepo.claim_idle_device(db, profile=profile, host="local", session_id=make_session(db))
    assert row is not None
    db.commit()
    return row.id


def demand(db) -> dict[str, Demand]:
    return {
        p: Demand(*found)
        for p, found in devrepo.pool_demand(db, profiles=sorted(PROFILES), window_s=600, samples=10).items()
    }


def wanted(db, *, rate_only: bool = False) -> int:
    found = demand(db)
    if rate_only:  # as if the claims had been spread out: no burst
        found = {p: Demand(d.claims, d.boot_p90_s) for p, d in found.items()}
    return pool_targets(PROFILES, {"stub-slow": (1, 10)}, found, SIZING, 1)["stub-slow"].wanted


def test_recorded_claims_raise_the_target(db):
    for _ in range(5):
        booted(db, 60.0)
    assert demand(db) == {"stub-slow": Demand(0, 60.0)}
    assert wanted(db) == 1  # no claims: the minimum
    for _ in range(5):
        claim(db)
    assert demand(db)["stub-slow"].claims == 5
    assert wanted(db, rate_only=True) == 1  # 5/600 x 60 x 1.5 = 0.75
    assert wanted(db) == 5  # but 5 came at once
    for _ in range(16):
        booted(db, 60.0)
        claim(db)
    assert demand(db)["stub-slow"].claims == 21
    assert wanted(db, rate_only=True) == 4  # 21/600 x 60 x 1.5 = 3.15
    assert wanted(db) == 10  # 21 within seconds: the maximum


def test_claims_at_once_are_a_burst_the_pool_keeps(db):
    """Five claims within a second: the rate alone asks for 1 (5/600 x 60 x 1.5), the burst for 5."""
    for _ in range(5):
        booted(db, 60.0)
        claim(db)
    found = demand(db)["stub-slow"]
    assert found.claims == 5 and len(found.claim_ages_s) == 5
    assert all(0 <= age < 5 for age in found.claim_ages_s)
    assert wanted(db) == 5
    earlier = timedelta(seconds=200)
    db.execute(
        update(DeviceRow).values(
            created_at=DeviceRow.created_at - earlier,
            ready_at=DeviceRow.ready_at - earlier,
            claimed_at=DeviceRow.claimed_at - earlier,
        )
    )
    db.commit()
    assert all(200 <= age < 205 for age in demand(db)["stub-slow"].claim_ages_s)
    assert wanted(db) == 5  # still in the window


def test_a_cold_boot_under_way_counts_from_its_start(db):
    """The pass after a burst sees the sessions still cold-booting, not only those already ready."""
    sid = make_session(db)
    device_id = make_device(db, state=DeviceState.BOOTING, session_id=sid)
    make_device(db, state=DeviceState.BOOTING)  # the pool's own boot: no demand
    db.commit()
    found = demand(db)["stub-slow"]
    assert found.claims == 1 and 0 <= found.claim_ages_s[0] < 5
    devrepo.transition_device(db, device_id, DeviceState.CLAIMED, reason="cold-booted", ready_at=func.now())
    db.commit()
    assert demand(db)["stub-slow"].claims == 1  # the same claim, now recorded as one


def test_a_cold_booted_device_counts_as_a_claim_when_its_boot_began(db):
    device_id = make_device(db, state=DeviceState.BOOTING)
    db.execute(
        update(DeviceRow)
        .where(DeviceRow.id == device_id)
        .values(created_at=func.now() - timedelta(seconds=90))
    )
    devrepo.transition_device(
        db, device_id, DeviceState.CLAIMED, reason="cold-booted", boot_s=90.0, ready_at=func.now()
    )
    db.commit()
    found = demand(db)["stub-slow"]
    assert found.claims == 1
    assert 90 <= found.claim_ages_s[0] < 95  # asked for at the boot's start, not its end


def test_claims_before_the_window_do_not_count(db):
    for _ in range(3):
        booted(db, 60.0)
        device_id = claim(db)
    db.execute(
        update(DeviceRow)
        .where(DeviceRow.id == device_id)
        .values(claimed_at=func.now() - timedelta(seconds=601))
    )
    db.commit()
    assert demand(db)["stub-slow"].claims == 2
    assert len(demand(db)["stub-slow"].claim_ages_s) == 2


def test_the_boot_time_is_the_p90_of_the_last_samples_per_profile(db):
    for i in range(5):
        booted(db, 500.0, ready_ago_s=3600 + i)  # older than the last 10: not sampled
    for i, boot_s in enumerate([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]):
        booted(db, boot_s, ready_ago_s=100 - i)
    booted(db, 7.0, profile="stub")
    found = demand(db)
    assert found["stub-slow"].boot_p90_s == pytest.approx(91.0)  # percentile_cont: 90 + 0.1 x 10
    assert found["stub"] == Demand(0, 7.0)


def test_no_devices_no_demand(db):
    assert demand(db) == {}
    assert wanted(db) == 1
