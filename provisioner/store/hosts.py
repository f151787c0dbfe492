"""Host store operations (the hosts table) and placement. Like store.repository, each takes a
SQLAlchemy Session and never commits; the caller owns the transaction.

Placement (`choose_host`) locks every active host row (FOR UPDATE, in name order so two placers
never deadlock), reads what is placed on them *after* taking the locks, and returns the host with
the most free capacity that fits the need. The caller records the device on that host in the same
transaction: the next placer waits for the lock and then sees it, so no host is oversubscribed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from provisioner.store.host_states import HostState, check_host_transition
from provisioner.store.models import HOST_NAME_PATTERN, HostRow


class HostNotFound(LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no host {name!r} (see `provisioner hosts`)")


class NoCapacity(Exception):
    """No active host has room for the device: the caller waits or fails, nothing was placed."""

    def __init__(self, need: Resources, hosts: Mapping[str, Resources]) -> None:
        self.need = need
        free = ", ".join(
            f"{name}: {r.cpus:g} cpus {r.memory_mb} MB free" for name, r in sorted(hosts.items())
        )
        super().__init__(
            f"no active host has {need.cpus:g} cpus and {need.memory_mb} MB free ({free or 'no active host'})"
        )


@dataclass(frozen=True)
class Resources:
    cpus: float
    memory_mb: int

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpus + other.cpus, self.memory_mb + other.memory_mb)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpus - other.cpus, self.memory_mb - other.memory_mb)

    def fits(self, need: Resources) -> bool:
        return self.cpus >= need.cpus - 1e-9 and self.memory_mb >= need.memory_mb


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$", re.IGNORECASE)
_MB_PER_UNIT = {"": 1 / (1024 * 1024), "b": 1 / (1024 * 1024), "k": 1 / 1024, "m": 1, "g": 1024}


def memory_mb(limit: str) -> int:
    """Docker's memory notation ("256m", "6g", "1024k") in MiB, rounded up."""
    match = _MEMORY.match(limit)
    if match is None:
        raise ValueError(f"not a memory size: {limit!r} (e.g. 512m or 6g)")
    value = float(match.group(1)) * _MB_PER_UNIT[match.group(2).lower()]
    return max(1, int(-(-value // 1)))


def check_name(name: str) -> str:
    if not re.fullmatch(HOST_NAME_PATTERN, name):
        raise ValueError(
            f"host name {name!r} must be lowercase letters, digits and '-', starting with a letter "
            "(it names the Prefect work queue host-<name>)"
        )
    return name


def add_host(
    db: Session,
    *,
    name: str,
    docker_url: str,
    stream_address: str,
    cpus: float,
    memory_mb: int,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    insecure_plain_tcp: bool = False,
) -> HostRow:
    """Record a host (active), or update an existing one's URL, TLS file paths, address and
    capacity (its state is kept: a drained host stays draining until `activate_host`). The caller
    checks the URL first (runtime.engines.check_engine_url)."""
    check_name(name)
    if cpus <= 0 or memory_mb <= 0:
        raise ValueError("a host's cpus and memory must be positive")
    row = db.get(HostRow, name, with_for_update=True)
    if row is None:
        row = HostRow(name=name, state=HostState.ACTIVE.value, reason="added")
        db.add(row)
    else:
        row.version += 1
    row.docker_url = docker_url
    row.tls_ca, row.tls_cert, row.tls_key = tls_ca, tls_cert, tls_key
    row.insecure_plain_tcp = insecure_plain_tcp
    row.stream_address = stream_address
    row.cpus = cpus
    row.memory_mb = memory_mb
    db.flush()
    return row


def get_host(db: Session, name: str, *, for_update: bool = False) -> HostRow:
    row = db.get(HostRow, name, with_for_update=for_update)
    if row is None:
        raise HostNotFound(name)
    return row


def list_hosts(db: Session) -> list[HostRow]:
    return list(db.scalars(select(HostRow).order_by(HostRow.name)))


def active_host_names(db: Session) -> list[str]:
    return list(
        db.scalars(select(HostRow.name).where(HostRow.state == HostState.ACTIVE.value).order_by(HostRow.name))
    )


def transition_host(db: Session, name: str, to_state: HostState, *, reason: str) -> HostRow:
    """Move a host to ``to_state`` if the table allows it (row locked, version bumped); a move to
    the state it is already in changes nothing."""
    row = get_host(db, name, for_update=True)
    if row.state == to_state.value:
        return row
    check_host_transition(name, HostState(row.state), to_state)
    row.state = to_state.value
    row.reason = reason[:2000]
    row.version += 1
    if to_state != HostState.DOWN:
        row.down_since = None
    db.flush()
    return row


def record_answer(db: Session, name: str, *, at: datetime) -> HostRow:
    """The host's engine answered a pass: last seen now; a down host is active again."""
    row = get_host(db, name, for_update=True)
    row.last_seen_at = at
    row.down_since = None
    if row.state == HostState.DOWN.value:
        transition_host(db, name, HostState.ACTIVE, reason="engine answers again")
    db.flush()
    return row


def record_answers(db: Session, names: list[str], *, at: datetime) -> None:
    """Several hosts' engines answered a pass: record_answer for all of them in one statement (a
    down one is then made active again, the rare case, one by one)."""
    if not names:
        return
    seen = db.execute(
        update(HostRow)
        .where(HostRow.name.in_(names))
        .values(last_seen_at=at, down_since=None)
        .returning(HostRow.name, HostRow.state),
        execution_options={"synchronize_session": False},
    ).all()
    for name, state in seen:
        if state == HostState.DOWN.value:
            transition_host(db, name, HostState.ACTIVE, reason="engine answers again")


def record_silence(db: Session, name: str, *, at: datetime, grace_s: float, error: str) -> bool:
    """The host's engine did not answer a pass. The first silence starts the grace period; once
    it has lasted ``grace_s`` the host goes down. True when the host is down after this call."""
    row = get_host(db, name, for_update=True)
    if row.state == HostState.DOWN.value:
        return True
    if row.down_since is None:
        row.down_since = at
        db.flush()
    if at - row.down_since < timedelta(seconds=grace_s):
        return False
    since = row.down_since
    transition_host(
        db, name, HostState.DOWN, reason=f"engine silent since {since.isoformat()}: {error}"[:2000]
    )
    row.down_since = since
    db.flush()
    return True


Usage = Callable[[Session], Mapping[str, Resources]]


def choose_host(db: Session, need: Resources, used: Usage, *, only: str | None = None) -> HostRow:
    """The active host with the largest share of its capacity free that fits ``need`` (so hosts
    fill in proportion to their capacity; ties: where more such devices fit, then by name), row
    locked until the caller's transaction ends (see the module doc). ``only``: that host or none
    (a pool refill for a given host). Raises NoCapacity when none fits."""
    stmt = select(HostRow).where(HostRow.state == HostState.ACTIVE.value)
    if only is not None:
        stmt = stmt.where(HostRow.name == only)
    hosts = list(db.scalars(stmt.order_by(HostRow.name).with_for_update()))
    placed = used(db)  # after the locks: sees every placement committed before ours
    free = {h.name: Resources(h.cpus, h.memory_mb) - placed.get(h.name, Resources(0.0, 0)) for h in hosts}
    fitting = [h for h in hosts if free[h.name].fits(need)]
    if not fitting:
        raise NoCapacity(need, free)

    def headroom(host: HostRow) -> tuple[float, float, str]:
        room = free[host.name]
        share = min(room.cpus / host.cpus, room.memory_mb / host.memory_mb)
        more = min(
            room.cpus / need.cpus if need.cpus else float("inf"), room.memory_mb / max(need.memory_mb, 1)
        )
        return (-round(share, 9), -more, host.name)

    return min(fitting, key=headroom)
