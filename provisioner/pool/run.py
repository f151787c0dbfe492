"""Observing the pool and carrying out its plan (boots in parallel, each action isolated)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import func, select

from provisioner.pool.plan import PoolAction, PoolDevice, PoolKind, PoolObserved
from provisioner.pool.size import Demand, Sizing, Target, bounds, pool_targets
from provisioner.runtime.model import Role
from provisioner.steps.boot import boot_device
from provisioner.steps.deps import Deps
from provisioner.steps.devices import LaunchSlot, retire_device
from provisioner.store import devices as devrepo

log = logging.getLogger(__name__)


def observe_pool(deps: Deps) -> PoolObserved:
    """Every non-terminal device on the deployment's hosts (one query), its device container (one
    list call per host engine) and the active hosts."""
    containers = {c.device_id: c for c in deps.runtime.list_managed() if c.role == Role.DEVICE.value}
    managed = deps.hosts
    with deps.sessions() as db:
        now = db.scalar(select(func.now()))
        hosts = managed.active(db)
        rows = [(row, sid) for row, sid in devrepo.list_live_devices(db) if managed.manages(row.host)]
    devices = []
    for row, session_id in rows:
        container = containers.get(row.id)
        devices.append(
            PoolDevice(
                id=row.id,
                profile=row.profile,
                state=row.state,
                held=session_id is not None or row.state == "claimed",
                created_at=row.created_at,
                ready_at=row.ready_at,
                container_state=container.state if container else None,
                health=container.health if container else None,
                host=row.host,
            )
        )
    return PoolObserved(now=now, devices=devices, hosts=hosts)


def observe_demand(deps: Deps) -> dict[str, Demand]:
    """Each profile's claims over the demand window (how many, and when) and p90 boot time (two
    indexed queries)."""
    pool = deps.settings.pool
    with deps.sessions() as db:
        found = devrepo.pool_demand(
            db,
            profiles=sorted(deps.runtime.profiles),
            window_s=pool.demand_window_s,
            samples=pool.boot_samples,
        )
    return {profile: Demand(claims, p90, ages) for profile, (claims, p90, ages) in found.items()}


def targets_for(deps: Deps, demand: dict[str, Demand], hosts: int) -> dict[str, Target]:
    """Each kept profile's idle devices per active host, from the settings' bounds and ``demand``."""
    pool, profiles = deps.settings.pool, deps.runtime.profiles
    sizing = Sizing(window_s=pool.demand_window_s, headroom=pool.headroom)
    return pool_targets(profiles, bounds(profiles, pool.warm, pool.max), demand, sizing, hosts)


@dataclass(frozen=True)
class PoolResult:
    action: PoolAction
    ok: bool
    result: str


def _do(deps: Deps, action: PoolAction, slot: LaunchSlot | None = None) -> PoolResult:
    try:
        if action.kind == PoolKind.BOOT:
            device = boot_device(deps, action.profile, reason="warm pool", host=action.host, slot=slot)
            return PoolResult(action, True, f"device {device.id} idle")
        assert action.device_id
        problems = retire_device(deps, action.device_id, reason=f"pool: {action.reason}")
        return PoolResult(action, not problems, "retired" + (f" ({'; '.join(problems)})" if problems else ""))
    except Exception as exc:  # isolation: report it and go on
        log.exception("pool action %s %s failed", action.kind, action.target)
        return PoolResult(action, False, f"error: {type(exc).__name__}: {exc}")


def act_pool(deps: Deps, actions: list[PoolAction], slot: LaunchSlot | None = None) -> list[PoolResult]:
    """Retire first (frees capacity), then boot in parallel (each under ``slot(host)``: its host's
    launch limit, shared with provisions; on a host's work queue, the launch run takes it there)."""
    results = [_do(deps, a) for a in actions if a.kind == PoolKind.RETIRE]
    boots = [a for a in actions if a.kind == PoolKind.BOOT]
    if boots:
        deps.runtime.ensure_network()
        hosts = len({a.host for a in boots})
        with ThreadPoolExecutor(max_workers=deps.settings.docker.launch_slots * hosts) as workers:
            results += list(workers.map(lambda a: _do(deps, a, slot), boots))
    return results


def pool_table(deps: Deps) -> list[dict[str, str]]:
    """One row per live device (of every host), for the pool's table artifact."""
    observed = observe_pool(deps)
    return [
        {
            "device": d.id,
            "host": d.host,
            "profile": d.profile,
            "state": d.state,
            "held": "yes" if d.held else "no",
            "age_s": f"{(observed.now - d.created_at).total_seconds():.0f}",
            "container": d.container_state or "missing",
            "health": d.health or "-",
        }
        for d in observed.devices
    ]
