"""The Docker hosts devices are placed on, decided in one place (load_hosts), and placement.

When the hosts table has rows, devices go to its active hosts (runtime.table.HostsRuntime routes
every call about a device to its host's engine). While it has none, there is one implicit row:
this process's own engine, named by PROVISIONER_DOCKER__HOST (else ``local``), with no capacity
limit, no work queue, and one launch limit. Everything above the runtime asks a Hosts value or
its Runtime what to do and never which of the two it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from provisioner.runtime.profiles import DeviceProfile
from provisioner.store import hosts as hostrepo
from provisioner.store.device_states import DEVICE_TERMINAL
from provisioner.store.hosts import Resources
from provisioner.store.models import DeviceRow, HostRow

LOCAL = "local"  # the implicit host's name when PROVISIONER_DOCKER__HOST is not set


@dataclass(frozen=True)
class Hosts:
    """The hosts table's rows (``table``), or one implicit row named ``local``."""

    local: str = LOCAL
    table: bool = False

    def claims_on(self) -> str | None:
        """The host idle devices are claimed on; None: any active host of the table."""
        return None if self.table else self.local

    def manages(self, host: str) -> bool:
        """Whether a device recorded on ``host`` is this deployment's to look after."""
        return self.table or host == self.local

    def active(self, db: Session) -> tuple[str, ...]:
        """The hosts that take new devices (the pool refills each of them)."""
        return tuple(hostrepo.active_host_names(db)) if self.table else (self.local,)

    @property
    def queues(self) -> bool:
        """Whether launches can run on the hosts' own work queues (host-<name>): hosts of the
        table have a worker each; the implicit host is this process's engine."""
        return self.table

    def limit_name(self, prefix: str, host: str) -> str:
        """A per-host name (``prefix-host``) over the table; ``prefix`` for the implicit host."""
        return f"{prefix}-{host}" if self.table else prefix


def hosts_table_has_rows(sessions: sessionmaker[Session]) -> bool:
    """False while the database cannot say (this process's own engine then, as with one host)."""
    try:
        with sessions() as db:
            return db.scalar(select(func.count()).select_from(HostRow)) > 0
    except SQLAlchemyError:
        return False


def load_hosts(settings: Any, sessions: sessionmaker[Session]) -> Hosts:
    """One host or several: the one place that decides (one count query, no Docker client)."""
    return Hosts(local=implicit_host(settings), table=hosts_table_has_rows(sessions))


def implicit_host(settings: Any) -> str:
    return settings.docker.host or LOCAL


def profile_need(profile: DeviceProfile) -> Resources:
    return Resources(profile.cpus, hostrepo.memory_mb(profile.mem_limit))


def device_usage(profiles: Mapping[str, DeviceProfile]) -> hostrepo.Usage:
    """What the live devices on each host use (their profiles' cpus and memory): one query."""

    def used(db: Session) -> dict[str, Resources]:
        rows = db.execute(
            select(DeviceRow.host, DeviceRow.profile, func.count())
            .where(DeviceRow.state.not_in([s.value for s in DEVICE_TERMINAL]))
            .group_by(DeviceRow.host, DeviceRow.profile)
        )
        total: dict[str, Resources] = {}
        for host, profile, count in rows:
            known = profiles.get(profile)
            need = profile_need(known) if known else Resources(0.0, 0)
            total[host] = total.get(host, Resources(0.0, 0)) + Resources(
                need.cpus * count, need.memory_mb * count
            )
        return total

    return used
