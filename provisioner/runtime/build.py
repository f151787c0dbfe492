"""The process's runtime, made from settings: over the hosts table's hosts, or this engine."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from provisioner.runtime.base import Runtime
from provisioner.runtime.containers import ContainerRuntime
from provisioner.runtime.placement import Hosts, load_hosts
from provisioner.runtime.table import HostsRuntime


def build_runtime(settings: Any, sessions: sessionmaker[Session], hosts: Hosts | None = None) -> Runtime:
    """HostsRuntime when the hosts table has rows (routes per device), else this process's own
    engine; ``hosts``: as already loaded (load_hosts)."""
    hosts = hosts or load_hosts(settings, sessions)
    if hosts.table:
        return HostsRuntime.from_settings(settings, sessions)
    return ContainerRuntime.from_settings(settings)
