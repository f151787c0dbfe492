"""The runtime over the hosts table: devices on several Docker hosts.

Every call about a device goes to the runtime of the device's host (devices.host -> hosts row ->
its engine), and inventory() is one label-filtered container list call and one pair network list
call per host engine (observe_hosts, which also records who answered and marks silent hosts down
after the grace). A silent host's containers are not listed; the inventory names it late (within
its grace: the plan leaves its sessions alone) or down (the plan orphans its sessions at once and
retires its devices). A down host's engine is not called at all (HostDown): what is left on it is
removed as unowned when it answers again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioner.runtime.containers import ContainerRuntime, DeviceNames
from provisioner.runtime.engines import check_engine_url
from provisioner.runtime.errors import (
    EngineUnreachable,
    HostDown,
    RuntimeFailure,
    WrongEngine,
    translate_docker_errors,
)
from provisioner.runtime.hosts import HostEngine, HostEngines
from provisioner.runtime.isolation import pair_network_name
from provisioner.runtime.model import LABEL_DEVICE, ContainerInfo, Inventory, ManagedContainer, PairNetwork
from provisioner.runtime.placement import Hosts, device_usage, implicit_host, profile_need
from provisioner.runtime.profiles import DeviceProfile
from provisioner.store import hosts as hostrepo
from provisioner.store.host_states import HostState
from provisioner.store.models import DeviceRow, HostRow


@dataclass(frozen=True)
class HostsSeen:
    """What one pass saw of the hosts: containers and pair networks per answering host, and the
    silent hosts (down: past their grace; the others are late)."""

    containers: dict[str, list[ManagedContainer]] = field(default_factory=dict)
    networks: dict[str, list[PairNetwork]] = field(default_factory=dict)
    stray_guards: dict[str, list[str]] = field(default_factory=dict)  # host -> networks gone, rules left
    down: frozenset[str] = frozenset()
    silent: dict[str, str] = field(default_factory=dict)  # host -> error, down or still in grace

    @property
    def late(self) -> frozenset[str]:
        return frozenset(self.silent) - self.down


def observe_hosts(db: Session, engines: HostEngines, *, now: datetime, grace_s: float) -> HostsSeen:
    """List every host's containers and networks (concurrently), then record who answered: an
    engine that answers is seen now (a down host comes back active); one that does not starts,
    or continues, its grace period, after which its host is down (store.hosts.record_silence).

    The list calls happen outside any row lock; the host rows are updated afterwards in the
    caller's transaction."""
    rows = hostrepo.list_hosts(db)
    listed = [engines.engine(h) for h in rows]
    db.rollback()  # no transaction held open across the engines' calls
    listings = engines.list_each(listed)
    down: set[str] = set()
    silent: dict[str, str] = {}
    containers: dict[str, list[ManagedContainer]] = {}
    networks: dict[str, list[PairNetwork]] = {}
    stray_guards: dict[str, list[str]] = {}
    for name, listing in listings.items():
        if listing.inventory is not None:
            containers[name] = listing.inventory.containers
            networks[name] = listing.inventory.networks
            stray_guards[name] = listing.inventory.stray_guards
            continue
        silent[name] = listing.error or "no answer"
        if hostrepo.record_silence(db, name, at=now, grace_s=grace_s, error=silent[name]):
            down.add(name)
    hostrepo.record_answers(db, sorted(containers), at=now)
    return HostsSeen(
        containers=containers,
        networks=networks,
        stray_guards=stray_guards,
        down=frozenset(down),
        silent=silent,
    )


class HostsRuntime(DeviceNames):
    """The Runtime interface over every host of the hosts table (see the module doc)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        runtimes: HostEngines,
        *,
        grace_s: float,
        local: Callable[[], ContainerRuntime] | None = None,
        local_name: str = "local",
    ) -> None:
        self.sessions = sessions
        self.runtimes = runtimes
        self.grace_s = grace_s
        self.instance_id = runtimes.instance_id
        self.network = runtimes.network
        self.stream_image = runtimes.stream_image
        self.profiles = runtimes.profiles
        self.hosts = Hosts(local=local_name, table=True)
        self._local = local
        self._where: dict[str, str] = {}  # container id/name, network name -> host, last listing
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, sessions: sessionmaker[Session]) -> HostsRuntime:
        """The runtime over the hosts table; refuses (EngineRefused) when a host's engine URL is
        plain tcp:// off this machine without TLS or --insecure-plain-tcp."""
        runtime = cls(
            sessions,
            HostEngines.from_settings(settings),
            grace_s=settings.reconcile.host_down_grace_s,
            local=lambda: ContainerRuntime.from_settings(settings),
            local_name=implicit_host(settings),
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
        the device: see store.hosts.choose_host); ``only``: that host if it has room."""
        need = profile_need(self.profile(profile))
        return hostrepo.choose_host(db, need, device_usage(self.profiles), only=only).name

    def check_engine(self, profile: DeviceProfile) -> None:
        """Nothing to ask before placement: the placed host's engine answers at launch."""

    def this_engine_as(self, host: str) -> ContainerRuntime:
        """This worker's own engine (PROVISIONER_DOCKER__HOST, else DOCKER_HOST), publishing
        streams on ``host``'s stream address. Refuses (WrongEngine) when that engine is not the
        one the hosts table names for ``host`` (engine ID, host name and data root differ): a
        worker serving another host's queue must not launch there."""
        with self.sessions() as db:
            row = hostrepo.get_host(db, host)
        if self._local is None:
            raise RuntimeFailure("this runtime was made without this process's own engine")
        local = self._local()
        local.publish_host = row.stream_address
        if _identity(local.client) != _identity(self.runtimes.client(self.runtimes.engine(row))):
            raise WrongEngine(
                f"this worker's Docker engine is not host {host}'s ({row.docker_url}): start the worker "
                f"of work queue host-{host} on that host with its engine as DOCKER_HOST"
            )
        return local

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

    # -- the device interface ---------------------------------------------------------------------

    def ensure_network(self) -> None:
        """Each launch ensures the network on its own host."""

    def launch_device(self, device_id: str, profile: str, *, secret: str | None = None) -> ContainerInfo:
        return self.on(device_id).launch_device(device_id, profile, secret=secret)

    def launch_stream(self, device_id: str, *, secret: str | None = None) -> ContainerInfo:
        return self.on(device_id).launch_stream(device_id, secret=secret)

    def heal_stream(self, device_id: str, *, secret: str | None = None) -> ContainerInfo:
        return self.on(device_id).heal_stream(device_id, secret=secret)

    def wait_device_ready(
        self, device_id: str, profile: str, timeout_s: float | None = None
    ) -> ContainerInfo:
        return self.on(device_id).wait_device_ready(device_id, profile, timeout_s)

    def wait_stream_ready(
        self, device_id: str, timeout_s: float | None = None, *, secret: str | None = None
    ) -> ContainerInfo:
        return self.on(device_id).wait_stream_ready(device_id, timeout_s, secret=secret)

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
        name = pair_network_name(self.instance_id, device_id)
        return self._listed_on(name, "network").remove_pair_network(device_id)

    def guard_pair_network(self, device_id: str) -> bool:
        name = pair_network_name(self.instance_id, device_id)
        return self._listed_on(name, "network").guard_pair_network(device_id)

    def remove_guard(self, network: str) -> bool:
        return self._listed_on(f"guard {network}", "egress rules of").remove_guard(network)

    def inventory(self) -> Inventory:
        """Per host engine one container and one network list call (all at once); silent hosts
        list nothing and are named down or late."""
        with self.sessions() as db:
            seen = observe_hosts(db, self.runtimes, now=datetime.now(UTC), grace_s=self.grace_s)
            db.commit()
        where = {c.id: host for host, found in seen.containers.items() for c in found}
        where.update({c.name: host for host, found in seen.containers.items() for c in found})
        where.update({n.name: host for host, found in seen.networks.items() for n in found})
        where.update({f"guard {n}": host for host, found in seen.stray_guards.items() for n in found})
        with self._lock:
            self._where = where
        return Inventory(
            containers=[c for found in seen.containers.values() for c in found],
            networks=[n for found in seen.networks.values() for n in found],
            down=seen.down,
            late=seen.late,
            where=where,
            stray_guards=[n for found in seen.stray_guards.values() for n in found],
        )

    def list_managed(self) -> list[ManagedContainer]:
        """The containers of inventory(): one list call per host engine (at once)."""
        return self.inventory().containers


def _identity(client) -> tuple[str, str, str]:  # noqa: ANN001 - a docker.DockerClient
    """Which engine a client talks to: engines on one machine share the daemon key's ID and the
    host name, so the data root tells them apart."""
    with translate_docker_errors():
        info = client.info()
    return info.get("ID", ""), info.get("Name", ""), info.get("DockerRootDir", "")
