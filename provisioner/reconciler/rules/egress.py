"""Rules for the egress guard (runtime.egress): every live pair network has its rules, and no rules
outlive their network."""

from __future__ import annotations

from provisioner.reconciler.model import Action, Context, Kind, NetworkView, Reason, Verdict, done


def unguarded_network(network: NetworkView, ctx: Context) -> Verdict | None:
    """A pair network listed with some of its egress rules missing (deleted by hand, a firewall
    reload, an engine restart): install them again. Unknown (None: not checked) is left alone, and
    so is a network younger than the grace: its creator installs them right after creating it."""
    if network.guarded is not False:
        return None
    if network.created_at is not None and ctx.now - network.created_at < ctx.policy.grace:
        return None
    return done(
        Action(
            Kind.GUARD_NETWORK,
            Reason.NETWORK_UNGUARDED,
            device_id=network.device_id,
            network_name=network.name,
        )
    )


def stray_guard(network: str, ctx: Context) -> Verdict | None:
    """Egress rules of a pair network that no longer exists (its removal stopped half-way)."""
    return done(Action(Kind.REMOVE_GUARD, Reason.GUARD_STRAY, network_name=network))
