"""Device store operations (the devices table). Like store.repository, each takes a SQLAlchemy
Session and never commits; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, case, column, func, or_, select, true, update, values
from sqlalchemy.orm import Session

from provisioner.store.device_states import DEVICE_TERMINAL, DeviceState, check_device_transition
from provisioner.store.models import DeviceRow, HostRow, SessionRow


class DeviceNotFound(LookupError):
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        super().__init__(f"no device {device_id!r}")


_DEVICE_FIELDS = frozenset(
    {"stream_url", "stream_route", "ready_at", "boot_s", "claimed_at", "ended_at", "reason"}
)


def create_device(
    db: Session,
    *,
    device_id: str,
    profile: str,
    host: str,
    device_container: str,
    stream_container: str,
    session_id: str | None = None,
    stream_secret: str | None = None,
) -> DeviceRow:
    """Record a device as booting before its containers start (and, for a cold boot, bind it to
    the session waiting for it), so a crash in between leaves a trace."""
    row = DeviceRow(
        id=device_id,
        stream_secret=stream_secret,
        profile=profile,
        host=host,
        state=DeviceState.BOOTING.value,
        device_container=device_container,
        stream_container=stream_container,
    )
    db.add(row)
    db.flush()
    if session_id is not None:
        db.execute(update(SessionRow).where(SessionRow.id == session_id).values(device_id=device_id))
    return row


def get_device(db: Session, device_id: str, *, for_update: bool = False) -> DeviceRow:
    stmt = select(DeviceRow).where(DeviceRow.id == device_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = db.scalars(stmt).one_or_none()
    if row is None:
        raise DeviceNotFound(device_id)
    return row


def transition_device(
    db: Session, device_id: str, to_state: DeviceState, *, reason: str, **fields: Any
) -> DeviceRow:
    """Move a device to ``to_state`` if the table allows it (row locked, version bumped)."""
    unknown = set(fields) - _DEVICE_FIELDS
    if unknown:
        raise TypeError(f"transition_device() cannot set {sorted(unknown)}")
    row = get_device(db, device_id, for_update=True)
    check_device_transition(device_id, DeviceState(row.state), to_state)
    for name, value in fields.items():
        setattr(row, name, value)
    row.state = to_state.value
    row.reason = reason[:2000]
    row.version += 1
    if to_state in DEVICE_TERMINAL and row.ended_at is None:
        row.ended_at = func.now()
    if to_state == DeviceState.CLAIMED and row.claimed_at is None:
        row.claimed_at = func.now()
    db.flush()
    return row


def claim_idle_device(db: Session, *, profile: str, host: str | None, session_id: str) -> DeviceRow | None:
    """Take the oldest ready idle device of ``profile`` for the session, atomically: concurrent
    claimers skip rows another transaction holds (FOR UPDATE SKIP LOCKED), so no device is handed
    out twice and nobody waits. None when no device is idle (a device reconciliation saw down is
    not handed out). ``host`` None: on any active host."""
    stmt = (
        select(DeviceRow)
        .where(
            DeviceRow.state == DeviceState.IDLE.value,
            DeviceRow.down_since.is_(None),  # seen down: the device-down rule decides, not a claim
            DeviceRow.profile == profile,
            DeviceRow.host == host if host is not None else DeviceRow.host.in_(_active_hosts()),
        )
        .order_by(DeviceRow.ready_at, DeviceRow.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    row = db.scalars(stmt).first()
    if row is None:
        return None
    check_device_transition(row.id, DeviceState(row.state), DeviceState.CLAIMED)
    row.state = DeviceState.CLAIMED.value
    row.claimed_at = func.now()
    row.reason = f"claimed by session {session_id}"
    row.version += 1
    db.execute(update(SessionRow).where(SessionRow.id == session_id).values(device_id=row.id))
    db.flush()
    return row


def _active_hosts():
    return select(HostRow.name).where(HostRow.state == "active")


def session_device(db: Session, session_id: str) -> DeviceRow | None:
    """The device a session holds, if any."""
    stmt = (
        select(DeviceRow)
        .join(SessionRow, SessionRow.device_id == DeviceRow.id)
        .where(SessionRow.id == session_id)
    )
    return db.scalars(stmt).one_or_none()


def unbind_session_device(db: Session, session_id: str) -> None:
    db.execute(update(SessionRow).where(SessionRow.id == session_id).values(device_id=None))


def device_session_id(db: Session, device_id: str) -> str | None:
    return db.scalar(select(SessionRow.id).where(SessionRow.device_id == device_id))


def list_live_devices(db: Session) -> list[tuple[DeviceRow, str | None]]:
    """Every non-terminal device with the id of the session holding it: one round trip."""
    stmt = (
        select(DeviceRow, SessionRow.id)
        .outerjoin(SessionRow, SessionRow.device_id == DeviceRow.id)
        .where(DeviceRow.state.not_in([s.value for s in DEVICE_TERMINAL]))
        .order_by(DeviceRow.created_at, DeviceRow.id)
    )
    return [(row, sid) for row, sid in db.execute(stmt)]


def pool_demand(
    db: Session, *, profiles: Sequence[str], window_s: float, samples: int
) -> dict[str, tuple[int, float | None, tuple[float, ...]]]:
    """Per profile of ``profiles`` with any: the devices claimed within the last ``window_s``
    (warm, or cold-booted for a session, counted from the start of its boot), the p90 of its last
    ``samples`` boot times (None: none recorded), and how long ago each claim was asked for, in
    seconds: a warm device's claim, or a cold-booted device's creation (its session asked before
    the boot, not when it ended; its ready_at and claimed_at are the same transaction's time).
    Two queries on indexes (ix_devices_claimed_at, ix_devices_profile_ready_at): a pass reads the
    window and the last boots, not the devices' whole history."""
    since = func.now() - timedelta(seconds=window_s)
    asked_at = case(
        (or_(DeviceRow.ready_at.is_(None), DeviceRow.ready_at >= DeviceRow.claimed_at), DeviceRow.created_at),
        else_=DeviceRow.claimed_at,
    )
    claims = db.execute(
        select(
            DeviceRow.profile,
            func.count(),
            func.array_agg(func.extract("epoch", func.now() - asked_at)),
        )
        .where(
            or_(
                DeviceRow.claimed_at >= since,
                # A cold boot under way for a session: asked for already, claimed once it is ready.
                and_(
                    DeviceRow.state == DeviceState.BOOTING.value,
                    DeviceRow.created_at >= since,
                    select(SessionRow.id).where(SessionRow.device_id == DeviceRow.id).exists(),
                ),
            )
        )
        .group_by(DeviceRow.profile)
    )
    found: dict[str, tuple[int, float | None, tuple[float, ...]]] = {
        profile: (count, None, tuple(float(age) for age in ages)) for profile, count, ages in claims
    }
    if not profiles:
        return found
    names = values(column("profile", String), name="wanted").data([(name,) for name in profiles])
    last = (
        select(DeviceRow.boot_s)
        .where(
            DeviceRow.profile == names.c.profile,
            DeviceRow.boot_s.is_not(None),
            DeviceRow.ready_at.is_not(None),
        )
        .order_by(DeviceRow.ready_at.desc())
        .limit(samples)
        .lateral("last")
    )
    boots = db.execute(
        select(names.c.profile, func.percentile_cont(0.9).within_group(last.c.boot_s))
        .select_from(names.join(last, true()))
        .group_by(names.c.profile)
    )
    for profile, p90 in boots:
        count, _, ages = found.get(profile, (0, None, ()))
        found[profile] = (count, p90, ages)
    return found


def mark_down(db: Session, device_id: str, condition: str, *, at: datetime) -> None:
    """Reconciliation saw the device down for the first time (``condition``: missing, exited,
    paused, restarting, unhealthy, ...); a device already marked keeps its first record. No
    version bump: an observation, not a change of substance."""
    db.execute(
        update(DeviceRow)
        .where(DeviceRow.id == device_id, DeviceRow.down_since.is_(None))
        .values(down_condition=condition, down_since=at)
    )


def clear_down(db: Session, device_id: str) -> None:
    """Reconciliation saw the device up again."""
    db.execute(
        update(DeviceRow).where(DeviceRow.id == device_id).values(down_since=None, down_condition=None)
    )


def touch_session_activity(db: Session, session_id: str) -> None:
    """The session's device was used now (the gateway relays its open stream)."""
    held = select(SessionRow.device_id).where(SessionRow.id == session_id).scalar_subquery()
    db.execute(update(DeviceRow).where(DeviceRow.id == held).values(last_activity_at=func.now()))


def set_stream(db: Session, device_id: str, *, route: str | None, url: str | None) -> None:
    """The device's stream was recreated (a heal): where the gateway reaches it (``route``) and,
    when it is published, its URL changed."""
    values: dict[str, Any] = {"stream_route": route}
    if url:
        values["stream_url"] = url
    db.execute(update(DeviceRow).where(DeviceRow.id == device_id).values(**values))


@dataclass(frozen=True)
class StreamRoute:
    """What the gateway needs to reach a device's stream, from the database alone."""

    device_id: str
    stream_container: str
    route: str | None  # host:port, None until the device's boot recorded it
    host: str
    host_state: str | None  # the hosts row's state; None for a single-engine device
    secret: str | None = None  # devices.stream_secret; None: an open stream (recorded before it)


def stream_route(db: Session, device_id: str) -> StreamRoute | None:
    """The device's recorded stream route with its host's state (one query); None: no device."""
    found = db.execute(
        select(
            DeviceRow.stream_container,
            DeviceRow.stream_route,
            DeviceRow.host,
            HostRow.state,
            DeviceRow.stream_secret,
        )
        .outerjoin(HostRow, HostRow.name == DeviceRow.host)
        .where(DeviceRow.id == device_id)
    ).first()
    if found is None:
        return None
    container, route, host, host_state, secret = found
    return StreamRoute(device_id, container, route, host, host_state, secret)
