"""Devices over several Docker hosts: placement, and the runtime interface routed per host.

When the hosts table has rows, a process's runtime is a HostsRuntime: every call about a device
goes to the runtime of the device's host (devices.host -> hosts row -> its engine), and
inventory() is one label-filtered container list call and one pair network list call per host
engine (reconciler.hosts.observe_hosts, which also records who answered and marks silent hosts
down after the grace). A silent host's containers are not listed; the inventory names it late
(within its grace: the plan leaves its sessions alone) or down (the plan orphans its sessions at
once and retires its devices). A down host's engine is not called at all (HostDown): what is
left on it is removed as unowned when it answers again. Without hosts rows nothing changes: the
process's own engine, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from provisioner.runtime import ContainerInfo, ContainerRuntime, DeviceProfile, ManagedContainer
from provisioner.runtime.containers import DeviceNames
from provisioner.runtime.engines import check_engine_url
from provisioner.runtime.errors import EngineUnreachable, HostDown, RuntimeFailure
from provisioner.runtime.hosts import HostEngine, HostRuntimes
from provisioner.runtime.model import LABEL_DEVICE, Inventory
from provisioner.store import hosts as hostrepo
from provisioner.store.device_states import DEVICE_TERMINAL
from provisioner.store.host_states import HostState
from provisioner.store.hosts import Resources
from provisioner.store.models import DeviceRow, HostRow


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


def has_hosts(sessions: sessionmaker[Session]) -> bool:
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(HostRow)) > 0


def hosts_mode(deps) -> bool:  # noqa: ANN001 - provisioning.deps.Deps (it imports this module)
    """Whether this process places devices over the hosts table's hosts; decided without making
    a Docker client when the process has none yet (the gateway has no engine to ask)."""
    return deps.hosts_mode()


def place_device(deps, db: Session, profile: str, *, host: str | None = None) -> str:  # noqa: ANN001
    """The host a new device goes to, chosen inside ``db``'s transaction (the one recording it);
    ``host``: that host if it is active and has room (a pool refill for it), else NoCapacity."""
    runtime = deps.runtime
    if isinstance(runtime, HostsRuntime):
        return runtime.place(db, profile, only=host)
    return deps.settings.docker.host or "local"


class HostsRuntime(DeviceNames):
    """The ContainerRuntime interface over every host of the hosts table (see the module doc)."""

    def __init__(self, sessions: sessionmaker[Session], runtimes: HostRuntimes, *, grace_s: float) -> None:
        self.sessions = sessions
        self.runtimes = runtimes
        self.grace_s = grace_s
        self.instance_id = runtimes.instance_id
        self.network = runtimes.network
        self.profiles = runtimes.profiles
        self._where: dict[str, str] = {}  # container id/name, network name -> host, last listing
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, sessions: sessionmaker[Session]) -> HostsRuntime:  # noqa: ANN001
        """The runtime over the hosts table; refuses (EngineRefused) when a host's engine URL is
        plain tcp:// off this machine without TLS or --insecure-plain-tcp."""
        runtime = cls(
            sessions, HostRuntimes.from_settings(settings), grace_s=settings.reconcile.host_down_grace_s
        )
        runtime.check_engines()
        return runtime

    def check_engines(self) -> None:
        """Refuse what runtime.engines refuses for any host, before any engine is called."""
        with self.sessions() as db:
            engines = [self.runtimes.engine(row) for row in hostrepo.list_hosts(db)]
        for engine in engines:
            check_engine_url(
                engine.docker_url,
                tls=engine.tls,
                insecure_plain_tcp=engine.insecure_plain_tcp,
                where=f"host {engine.name}",
            )

    # -- placement ------------------------------------------------------------------------------

    def place(self, db: Session, profile: str, *, only: str | None = None) -> str:
        """The host a new device of ``profile`` goes to (call inside the transaction that records
        the device: see store.hosts.choose_host)."""
        need = profile_need(self.profile(profile))
        return hostrepo.choose_host(db, need, device_usage(self.profiles), only=only).name

    # -- routing --------------------------------------------------------------------------------

    def _engine(self, row: HostRow) -> HostEngine:
        return self.runtimes.engine(row)

    def host_of(self, device_id: str) -> HostEngine:
        with self.sessions() as db:
            row = db.scalar(
                select(HostRow)
                .join(DeviceRow, DeviceRow.host == HostRow.name)
                .where(DeviceRow.id == device_id)
            )
        if row is None:
            raise EngineUnreachable(f"device {device_id} is on no known host")
        if row.state == HostState.DOWN.value:
            raise HostDown(row.name)
        return self._engine(row)

    def _host_named(self, name: str) -> HostEngine:
        with self.sessions() as db:
            row = hostrepo.get_host(db, name)
            if row.state == HostState.DOWN.value:
                raise HostDown(name)
            return self._engine(row)

    def on(self, device_id: str) -> ContainerRuntime:
        return self.runtimes.runtime(self.host_of(device_id))

    # -- the ContainerRuntime interface -----------------------------------------------------------

    def ensure_network(self) -> None:
        """Each launch ensures the network on its own host."""

    def launch_device(self, device_id: str, profile: str) -> ContainerInfo:
        return self.on(device_id).launch_device(device_id, profile)

    def launch_stream(self, device_id: str) -> ContainerInfo:
        return self.on(device_id).launch_stream(device_id)

    def heal_stream(self, device_id: str) -> ContainerInfo:
        return self.on(device_id).heal_stream(device_id)

    def wait_device_ready(
        self, device_id: str, profile: str, timeout_s: float | None = None
    ) -> ContainerInfo:
        return self.on(device_id).wait_device_ready(device_id, profile, timeout_s)

    def wait_stream_ready(self, device_id: str, timeout_s: float | None = None) -> ContainerInfo:
        return self.on(device_id).wait_stream_ready(device_id, timeout_s)

    def stream_url(self, info: ContainerInfo) -> str:
        return self.on(info.labels.get(LABEL_DEVICE, "")).stream_url(info)

    def stream_route(self, info: ContainerInfo) -> str | None:
        """The published port at the host's stream address: the gateway is not on a remote
        host's bridge network."""
        if info.host_port is None:
            return None
        return f"{self.host_of(info.device_id).stream_address}:{info.host_port}"

    def remove_device(self, device_id: str) -> list[str]:
        return self.on(device_id).remove_device(device_id)

    def _listed_on(self, name: str, what: str) -> ContainerRuntime:
        with self._lock:
            host = self._where.get(name)
        if host is None:
            raise RuntimeFailure(f"{what} {name} was not in the last listing of any host")
        return self.runtimes.runtime(self._host_named(host))

    def remove(self, name_or_id: str) -> bool:
        return self._listed_on(name_or_id, "container").remove(name_or_id)

    def remove_pair_network(self, device_id: str) -> bool:
        from provisioner.runtime.isolation import pair_network_name

        name = pair_network_name(self.instance_id, device_id)
        return self._listed_on(name, "network").remove_pair_network(device_id)

    def inventory(self) -> Inventory:
        """Per host engine one container and one network list call (all at once); silent hosts
        list nothing and are named down or late."""
        from provisioner.reconciler.hosts import observe_hosts  # here: reconciler imports provisioning

        with self.sessions() as db:
            seen = observe_hosts(db, self.runtimes, now=datetime.now(UTC), grace_s=self.grace_s)
            db.commit()
        where = {c.id: host for host, found in seen.containers.items() for c in found}
        where.update({c.name: host for host, found in seen.containers.items() for c in found})
        where.update({n.name: host for host, found in seen.networks.items() for n in found})
        with self._lock:
            self._where = where
        return Inventory(
            containers=[c for found in seen.containers.values() for c in found],
            networks=[n for found in seen.networks.values() for n in found],
            down=seen.down,
            late=seen.late,
            where=where,
        )

    def list_managed(self) -> list[ManagedContainer]:
        """The containers of inventory(): one list call per host engine (at once)."""
        return self.inventory().containers
