"""noVNC's page as the gateway serves it: it also retries a connection that failed.

noVNC (with ``reconnect=1`` in the URL, which our stream links carry) reconnects after a clean
disconnect, e.g. when the stream container goes away, but gives up after the first reconnect that
fails, and while reconciliation heals the stream the gateway answers the WebSocket with 503. The
script added to ``vnc.html`` keeps retrying every ``reconnect_delay`` until the stream is back.
"""

from __future__ import annotations

RETRY_SCRIPT = b"""<script type="module">
// provisioner gateway: keep reconnecting while the stream is being healed (noVNC stops after one failure).
import UI from "./app/ui.js";
const disconnectFinished = UI.disconnectFinished;
UI.disconnectFinished = (e) => {
    disconnectFinished(e);
    if (!e.detail.clean && UI.getSetting("reconnect", false) === true
            && !UI.inhibitReconnect && UI.reconnectCallback === null) {
        UI.updateVisualState("reconnecting");
        UI.reconnectCallback = setTimeout(UI.reconnect, parseInt(UI.getSetting("reconnect_delay")));
    }
};
</script>
"""
PAGE = "/vnc.html"
_ANCHOR = b"</head>"


def with_retry(page: bytes) -> bytes:
    """noVNC's vnc.html with the retry script after its own module; unchanged if not recognised."""
    if _ANCHOR not in page:
        return page
    return page.replace(_ANCHOR, RETRY_SCRIPT + _ANCHOR, 1)
