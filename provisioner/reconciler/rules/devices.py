"""Rules for devices no live session holds, and for containers and pair networks of no live device."""

from __future__ import annotations

from provisioner.reconciler.down import device_down
from provisioner.reconciler.model import (
    Action,
    ContainerView,
    Context,
    DeviceView,
    Kind,
    NetworkView,
    Reason,
    Verdict,
    done,
)
from provisioner.store import DeviceState


def _unheld(row: DeviceView, ctx: Context) -> bool:
    return row.session_id is None or row.session_id not in ctx.session_ids


def device_on_down_host(row: DeviceView, ctx: Context) -> Verdict | None:
    """A device on a down host held by no live session (idle, booting): retire it; its containers
    stay on the silent engine, removed as unowned when it answers again."""
    if row.host in ctx.observed.down_hosts and _unheld(row, ctx):
        return done(Action(Kind.RETIRE_DEVICE, f"host {row.host} down", device_id=row.id))
    return None


def device_on_late_host(row: DeviceView, ctx: Context) -> Verdict | None:
    """Nothing is known of a late host's containers this pass: leave its devices alone."""
    return done() if row.host in ctx.observed.late_hosts else None


def claimed_device_unheld(row: DeviceView, ctx: Context) -> Verdict | None:
    """A claimed device whose session ended (or never got it): retire it, it never goes back."""
    if row.state == DeviceState.CLAIMED and _unheld(row, ctx):
        return done(Action(Kind.RETIRE_DEVICE, Reason.DEVICE_UNHELD, device_id=row.id))
    return None


def idle_device_down(row: DeviceView, ctx: Context) -> Verdict | None:
    """The device-down rule (reconciler.down) for an idle pool device: noted, retired once down
    past the grace (the pool boots its replacement)."""
    if row.state != DeviceState.IDLE or row.session_id is not None:
        return None
    down = device_down(
        row,
        ctx.containers_of(row.id).get("device"),
        ctx.now,
        device_grace=ctx.policy.device_grace,
        unhealthy_grace=ctx.policy.unhealthy_grace,
        session_id=row.session_id,
    )
    if down.gone:
        return done(Action(Kind.RETIRE_DEVICE, down.gone, device_id=row.id))
    return done(down.record) if down.record is not None else done()


def unowned_container(container: ContainerView, ctx: Context) -> Verdict | None:
    """A container of no live device, once the grace has passed since it was created (one without
    a creation time is taken as old enough)."""
    if container.device_id in ctx.kept:
        return None
    age = ctx.now - container.created_at if container.created_at else ctx.policy.grace
    if age < ctx.policy.grace:
        return None
    return done(
        Action(
            Kind.REMOVE_CONTAINER,
            Reason.DEVICE_ENDED if container.device_id else Reason.DEVICE_UNKNOWN,
            device_id=container.device_id or None,
            container_id=container.id,
            container_name=container.name,
        )
    )


def unused_network(network: NetworkView, ctx: Context) -> Verdict | None:
    """A pair network whose device has no container left and no live row (a device removed behind
    our back, or a crash between creating the network and the container), after the grace."""
    device = network.device_id
    if not device or device in ctx.kept or device in ctx.with_containers:
        return None
    if network.created_at is not None and ctx.now - network.created_at < ctx.policy.grace:
        return None
    return done(
        Action(Kind.REMOVE_NETWORK, Reason.NETWORK_UNUSED, device_id=device, network_name=network.name)
    )
