"""Stream URLs of a session: the published port for local runs, else the gateway's route."""

from __future__ import annotations

from provisioner.steps.deps import Deps


def vnc_page_path(session_id: str) -> str:
    """The gateway path of a session's noVNC page: connects at once, and reconnects by itself
    (every 2 s) when the stream goes away and comes back (a heal)."""
    return (
        f"/vnc/{session_id}/vnc.html?autoconnect=1&reconnect=1&reconnect_delay=2000"
        f"&path=vnc/{session_id}/websockify"
    )


def gateway_stream_url(deps: Deps, session_id: str) -> str:
    return deps.settings.gateway.public_url.rstrip("/") + vnc_page_path(session_id)


def stream_url_for(deps: Deps, session_id: str, published_url: str | None) -> str:
    """The device's published stream URL for local runs; the gateway's URL when nothing is published."""
    return published_url or gateway_stream_url(deps, session_id)
