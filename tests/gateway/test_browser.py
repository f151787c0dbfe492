"""Headless Chromium opens a session's stream through the gateway and sees the device's screen."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from provisioner.runtime import Role
from provisioner.steps.streams import vnc_page_path
from provisioner.store import State
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.gateway import TOKEN, launch, record_stream_route

pytestmark = [pytest.mark.docker, pytest.mark.browser]

CONNECTED_JS = "document.documentElement.classList.contains('noVNC_connected')"
# The stub's xterm draws the session id in #7CFC00 on black.
GREEN_PIXELS_JS = """() => {
  const canvas = document.querySelector('#noVNC_container canvas');
  if (!canvas || !canvas.width) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let green = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 1] > 200 && data[i] < 160 && data[i + 2] < 60) green++;
  }
  return green;
}"""


@pytest.fixture
def browser(launched):
    """Started after the containers: Chromium aborts loads (ERR_NETWORK_CHANGED) while Docker adds
    interfaces, so it must not be running when they appear."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_novnc_connects_through_the_gateway(browser, gateway_factory, make_session, launched, tmp_path):
    gw = gateway_factory(token=TOKEN)
    sid = launched.session_id
    make_session(State.AWAITING_CODE, session_id=sid)
    page = browser.new_page(viewport={"width": 1100, "height": 850})
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("requestfailed", lambda req: console.append(f"failed: {req.url}"))
    try:
        # What the session's stream URL says, plus the token a browser user adds once.
        url = f"{gw.url}/vnc/{sid}/vnc.html?autoconnect=1&path=vnc/{sid}/websockify&token={TOKEN}"
        for attempt in range(3):  # a network change on the host may still abort a load
            page.goto(url)
            try:
                page.wait_for_function(CONNECTED_JS, timeout=10_000)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
        page.wait_for_function(f"({GREEN_PIXELS_JS})() > 500", timeout=20_000)
        shot = tmp_path / f"stream-{sid}.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 5_000
        if keep := os.environ.get("PROVISIONER_KEEP_SCREENSHOT"):  # to look at it after the run
            shutil.copy(shot, keep)
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"))
        print("\n".join(console[-30:]), f"\nscreenshot: {tmp_path / 'failure.png'}")
        raise
    finally:
        page.close()


@pytest.fixture
def healable(runtime):
    """A session of its own (this test kills its stream), started before the browser."""
    from provisioner.store import new_session_id

    sid = new_session_id()
    launch(runtime, sid)
    yield sid
    runtime.remove_device(sid)


def test_novnc_reconnects_by_itself_when_a_killed_stream_is_healed(
    healable, browser, gateway_factory, make_session, runtime, db_sessions, tmp_path
):
    gw = gateway_factory(token=TOKEN)
    sid = healable
    make_session(State.VERIFIED, session_id=sid)
    page = browser.new_page(viewport={"width": 1100, "height": 850})
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        url = f"{gw.url}{vnc_page_path(sid)}&token={TOKEN}"  # the session's stream link
        for attempt in range(3):  # a network change on the host may still abort a load
            page.goto(url)
            try:
                page.wait_for_function(CONNECTED_JS, timeout=10_000)
                break
            except PlaywrightTimeout:
                if attempt == 2:
                    raise
        page.wait_for_function(f"({GREEN_PIXELS_JS})() > 500", timeout=20_000)

        runtime.remove(runtime.name_for(sid, Role.STREAM))
        page.wait_for_function(f"!{CONNECTED_JS}", timeout=10_000)
        opened = len(sockets)
        # noVNC's own reconnect is refused (503: stream down); the gateway's page keeps retrying.
        for _ in range(100):
            if len(sockets) >= opened + 2:
                break
            page.wait_for_timeout(100)
        assert len(sockets) >= opened + 2, "noVNC gave up after the first failed reconnect"

        runtime.heal_stream(sid)
        runtime.wait_stream_ready(sid, timeout_s=30)
        record_stream_route(db_sessions, runtime, sid)  # the new container's route, as a heal records it
        page.wait_for_function(CONNECTED_JS, timeout=30_000)
        page.wait_for_function(f"({GREEN_PIXELS_JS})() > 500", timeout=20_000)
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"))
        print(f"websockets: {sockets}\nscreenshot: {tmp_path / 'failure.png'}")
        raise
    finally:
        page.close()
