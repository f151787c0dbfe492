"""Rules for one session, in the order reconciler.plan applies them after ``runs.dead_provision``:
its ttl or idle timeout, a stalled release, then (live sessions only) its host, its device and
its stream."""

from __future__ import annotations

from datetime import timedelta

from provisioner.reconciler.down import device_down
from provisioner.reconciler.model import Action, Context, Kind, Reason, SessionView, Verdict, done, noted
from provisioner.store import LIVE, State


def ttl_passed(session: SessionView, ctx: Context) -> Verdict | None:
    """A live session past its ttl: release it (expired)."""
    if session.state in LIVE and session.expires_at is not None and session.expires_at <= ctx.now:
        return done(Action(Kind.EXPIRE_SESSION, Reason.TTL_PASSED, session_id=session.id))
    return None


def idle_for(session: SessionView, ctx: Context) -> str | None:
    """Why a verified session counts as idle (no screen activity for its idle timeout), or None."""
    if session.state != State.VERIFIED or not session.idle_timeout_s or session.idle_since is None:
        return None
    quiet = ctx.now - session.idle_since
    if quiet < timedelta(seconds=session.idle_timeout_s):
        return None
    return f"no activity for {quiet.total_seconds():.0f} s (idle timeout {session.idle_timeout_s:g} s)"


def idle_too_long(session: SessionView, ctx: Context) -> Verdict | None:
    """Verified, but nobody used its screen for its idle timeout: release it (expired)."""
    if idle := idle_for(session, ctx):
        return done(Action(Kind.EXPIRE_SESSION, f"{Reason.IDLE}: {idle}", session_id=session.id))
    return None


def release_stalled(session: SessionView, ctx: Context) -> Verdict | None:
    """A release whose process died after it marked the session releasing: finish it past the
    deadline; a release in progress is left alone."""
    if session.state != State.RELEASING:
        return None
    if ctx.now - session.updated_at >= ctx.policy.provisioning_deadline:
        return done(Action(Kind.FINISH_RELEASE, Reason.RELEASE_STALLED, session_id=session.id))
    return done()


def not_live(session: SessionView, ctx: Context) -> Verdict | None:
    """The rules below are for live sessions only (a provision in progress is its flow's)."""
    return None if session.state in LIVE else done()


def host_down(session: SessionView, ctx: Context) -> Verdict | None:
    """Its device's host is down (silent past the host grace): orphan it now, the compensation
    closes its numbers and retires its device. A late host: nothing is known of its containers
    this pass, leave it alone."""
    device = ctx.device_of(session)
    host = device.host if device is not None else None
    if host in ctx.observed.down_hosts:
        why = f"host {host} down"
        return done(Action(Kind.ORPHAN_SESSION, why, session_id=session.id, device_id=session.device_id))
    if host in ctx.observed.late_hosts:
        return done()
    return None


def device_ended(session: SessionView, ctx: Context) -> Verdict | None:
    """No live device row: retired or failed under a live session (a provision's rollback retires
    its device just before its compensation ends the session). Past the device grace nobody is
    ending it: orphan it, so no live-looking session is left without its containers."""
    if ctx.device_of(session) is not None:
        return None
    ended = session.device_ended_at
    if ended is None or ctx.now - ended < ctx.policy.device_grace:
        return done()
    why = f"{Reason.DEVICE_ENDED_UNDER_SESSION} ({(ctx.now - ended).total_seconds():.0f} s ago)"
    return done(Action(Kind.ORPHAN_SESSION, why, session_id=session.id))


def session_device_down(session: SessionView, ctx: Context) -> Verdict | None:
    """Its device is down (reconciler.down): noted on the first sighting, orphaned once down past
    the grace; a device down within the grace is left alone (no heal of its stream)."""
    row = ctx.device_of(session)
    if row is None:
        return None
    down = device_down(
        row,
        ctx.containers_of(session.device_id).get("device"),
        ctx.now,
        device_grace=ctx.policy.device_grace,
        unhealthy_grace=ctx.policy.unhealthy_grace,
        session_id=row.session_id,
    )
    if down.gone:
        return done(Action(Kind.ORPHAN_SESSION, down.gone, session_id=session.id))
    recorded = (down.record,) if down.record is not None else ()
    return done(*recorded) if down.condition else noted(*recorded)


def stream_broken(session: SessionView, ctx: Context) -> Verdict | None:
    """The device runs but its stream does not (or fails its health check), or runs without a
    recorded route (a device booted before routes were recorded): heal the stream (the heal finds
    a running stream and records its route)."""
    stream = ctx.containers_of(session.device_id).get("stream")
    row = ctx.device_of(session)
    if stream is None:
        why = Reason.STREAM_MISSING
    elif stream.state != "running":
        why = Reason.STREAM_STOPPED
    elif stream.health == "unhealthy":
        why = Reason.STREAM_UNHEALTHY
    elif row is not None and not row.routed:
        why = Reason.STREAM_UNROUTED
    else:
        return None
    return done(Action(Kind.HEAL_STREAM, why, session_id=session.id, device_id=session.device_id))
