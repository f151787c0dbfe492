"""Observation of every Docker host: one list call per host engine per pass, and the hosts' state.

An engine that answers is seen now (a down host comes back active); one that does not starts,
or continues, its grace period, after which its host is down (store.hosts.record_silence).
The devices on a down host are gone for the pass's plan: their sessions are orphaned and their
numbers closed by the usual orphan action; containers nobody owns on answering hosts are removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from runtime.hosts import HostEngine, HostRuntimes
from runtime.model import ManagedContainer
from store import hosts as hostrepo


@dataclass(frozen=True)
class HostsSeen:
    """What one pass saw of the hosts: containers per answering host, and the down hosts."""

    containers: dict[str, list[ManagedContainer]] = field(default_factory=dict)
    down: frozenset[str] = frozenset()
    silent: dict[str, str] = field(default_factory=dict)  # host -> error, down or still in grace


def observe_hosts(db: Session, runtimes: HostRuntimes, *, now: datetime, grace_s: float) -> HostsSeen:
    """List every host's containers (one call each, concurrently), then record who answered.

    The list calls happen outside any row lock; the host rows are updated afterwards in the
    caller's transaction."""
    rows = hostrepo.list_hosts(db)
    engines = [HostEngine(h.name, h.docker_url, h.stream_address) for h in rows]
    db.rollback()  # no transaction held open across the engines' calls
    listings = runtimes.list_each(engines)
    down: set[str] = set()
    silent: dict[str, str] = {}
    containers: dict[str, list[ManagedContainer]] = {}
    for name, listing in listings.items():
        if listing.answered:
            hostrepo.record_answer(db, name, at=now)
            containers[name] = listing.containers or []
            continue
        silent[name] = listing.error or "no answer"
        if hostrepo.record_silence(db, name, at=now, grace_s=grace_s, error=silent[name]):
            down.add(name)
    return HostsSeen(containers=containers, down=frozenset(down), silent=silent)
