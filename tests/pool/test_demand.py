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
    return {p: Demand(c, b) for p, (c, b) in devrepo.pool_demand(db, window_s=600, samples=10).items()}


def wanted(db) -> int:
    return pool_targets(PROFILES, {"stub-slow": (1, 10)}, demand(db), SIZING, 1)["stub-slow"].wanted


def test_recorded_claims_raise_the_target(db):
    for _ in range(5):
        booted(db, 60.0)
    assert demand(db) == {"stub-slow": Demand(0, 60.0)}
    assert wanted(db) == 1  # no claims: the minimum
    for _ in range(5):
        claim(db)
    assert demand(db)["stub-slow"].claims == 5
    assert wanted(db) == 1  # 5/600 x 60 x 1.5 = 0.75
    for _ in range(16):
        booted(db, 60.0)
        claim(db)
    assert demand(db)["stub-slow"].claims == 21
    assert wanted(db) == 4  # 21/600 x 60 x 1.5 = 3.15


def test_a_cold_booted_device_counts_as_a_claim(db):
    device_id = make_device(db, state=DeviceState.BOOTING)
    devrepo.transition_device(db, device_id, DeviceState.CLAIMED, reason="cold-booted", boot_s=30.0)
    db.commit()
    assert demand(db)["stub-slow"].claims == 1


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
