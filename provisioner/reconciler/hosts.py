"""Observation of every Docker host: per host engine and pass, one container list call and one
pair network list call (concurrently over the hosts), and the hosts' state.

An engine that answers is seen now (a down host comes back active); one that does not starts,
or continues, its grace period, after which its host is down (store.hosts.record_silence).
A silent host within its grace is late: the plan leaves its sessions alone. The sessions whose
device is on a down host are orphaned at once by the plan (reason ``host <name> down``), their
numbers closed and their devices retired; the containers left on it are removed as unowned when
its engine answers again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from provisioner.runtime.hosts import HostRuntimes
from provisioner.runtime.model import ManagedContainer, PairNetwork
from provisioner.store import hosts as hostrepo


@dataclass(frozen=True)
class HostsSeen:
    """What one pass saw of the hosts: containers and pair networks per answering host, and the
    silent hosts (down: past their grace; the others are late)."""

    containers: dict[str, list[ManagedContainer]] = field(default_factory=dict)
    networks: dict[str, list[PairNetwork]] = field(default_factory=dict)
    down: frozenset[str] = frozenset()
    silent: dict[str, str] = field(default_factory=dict)  # host -> error, down or still in grace

    @property
    def late(self) -> frozenset[str]:
        return frozenset(self.silent) - self.down


def observe_hosts(db: Session, runtimes: HostRuntimes, *, now: datetime, grace_s: float) -> HostsSeen:
    """List every host's containers and networks (concurrently), then record who answered.

    The list calls happen outside any row lock; the host rows are updated afterwards in the
    caller's transaction."""
    rows = hostrepo.list_hosts(db)
    engines = [runtimes.engine(h) for h in rows]
    db.rollback()  # no transaction held open across the engines' calls
    listings = runtimes.list_each(engines)
    down: set[str] = set()
    silent: dict[str, str] = {}
    containers: dict[str, list[ManagedContainer]] = {}
    networks: dict[str, list[PairNetwork]] = {}
    for name, listing in listings.items():
        if listing.inventory is not None:
            containers[name] = listing.inventory.containers
            networks[name] = listing.inventory.networks
            continue
        silent[name] = listing.error or "no answer"
        if hostrepo.record_silence(db, name, at=now, grace_s=grace_s, error=silent[name]):
            down.add(name)
    hostrepo.record_answers(db, sorted(containers), at=now)
    return HostsSeen(containers=containers, networks=networks, down=frozenset(down), silent=silent)
