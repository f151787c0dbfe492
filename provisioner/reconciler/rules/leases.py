"""Rules for open numbers: unknown purchases are looked up (any session) when their backoff has
passed; cancels refused earlier are retried; other open numbers of ended sessions are closed."""

from __future__ import annotations

from provisioner.reconciler.model import Action, Context, Kind, LeaseView, Reason, Verdict, done
from provisioner.store import LeaseOutcome


def _due(lease: LeaseView, ctx: Context) -> bool:
    return lease.retry_after is None or lease.retry_after <= ctx.now


def session_ending(lease: LeaseView, ctx: Context) -> Verdict | None:
    """Its session is ended by an action of this pass, which closes the session's numbers itself."""
    return done() if lease.session_id in ctx.ending else None


def purchase_unknown(lease: LeaseView, ctx: Context) -> Verdict | None:
    """A purchase whose outcome is unknown: look it up at the provider once its backoff passed."""
    if lease.outcome != LeaseOutcome.UNKNOWN:
        return None
    if not _due(lease, ctx):
        return done()
    return done(
        Action(
            Kind.RESOLVE_PENDING_LEASE,
            Reason.PURCHASE_UNKNOWN,
            session_id=lease.session_id,
            lease_id=lease.id,
        )
    )


def cancel_refused(lease: LeaseView, ctx: Context) -> Verdict | None:
    """A cancel refused earlier: retry it once due, unless a provision or a release in progress
    (which closes its own numbers) holds the session."""
    if lease.outcome != LeaseOutcome.CANCEL_PENDING or lease.session_id in ctx.busy:
        return None
    if not _due(lease, ctx):
        return done()
    return done(Action(Kind.CLOSE_LEASE, Reason.CANCEL_RETRY, session_id=lease.session_id, lease_id=lease.id))


def session_open(lease: LeaseView, ctx: Context) -> Verdict | None:
    """Its session has not ended: its numbers are its own (or its flow's)."""
    return done() if lease.session_id in ctx.session_ids else None


def purchase_left_pending(lease: LeaseView, ctx: Context) -> Verdict | None:
    """A purchase recorded pending with no result on an ended session (a crash mid-purchase):
    look it up once the grace has passed since it was requested."""
    if lease.outcome != LeaseOutcome.PENDING or lease.activation_id:
        return None
    if ctx.now - lease.requested_at < ctx.policy.grace:
        return done()
    why = Reason.PURCHASE_LEFT_PENDING
    return done(Action(Kind.RESOLVE_PENDING_LEASE, why, session_id=lease.session_id, lease_id=lease.id))


def session_ended(lease: LeaseView, ctx: Context) -> Verdict | None:
    """Any other open number of an ended session: close it (finish with a code, else cancel)."""
    why = Reason.LEASE_ON_ENDED_SESSION
    return done(Action(Kind.CLOSE_LEASE, why, session_id=lease.session_id, lease_id=lease.id))
