"""Rows the store and pool tests start from: a device in a state, a session."""

from __future__ import annotations

from datetime import timedelta

from provisioner.store import DeviceState
from provisioner.store import devices as devrepo
from provisioner.store import repository as repo
from provisioner.store.models import new_session_id

D = DeviceState


def make_device(
    db,
    *,
    profile: str = "stub-slow",
    state: DeviceState = D.IDLE,
    host: str = "local",
    session_id: str | None = None,
) -> str:
    device_id = new_session_id()
    devrepo.create_device(
        db,
        device_id=device_id,
        profile=profile,
        host=host,
        device_container=f"prov-t-{device_id}-device",
        stream_container=f"prov-t-{device_id}-stream",
        session_id=session_id,
    )
    if state != D.BOOTING:
        devrepo.transition_device(db, device_id, state, reason="test")
    db.commit()
    return device_id


def make_session(db) -> str:
    row = repo.create_session(db, service="tg", country="0", actor="t", ttl=timedelta(minutes=5))
    db.commit()
    return row.id
