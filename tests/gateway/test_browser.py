"""Headless Chromium opens a session's page and stream through the gateway with the session's
signed link, and sees the device's screen, the number and the code."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from provisioner.runtime import Role
from provisioner.steps.links import session_page_url
from provisioner.steps.streams import vnc_page_path
from provisioner.store import State
from provisioner.store import codes as coderepo
from tests.harness.browser import CHROMIUM, CHROMIUM_ARGS
from tests.harness.gateway import TOKEN, launch, record_stream_route
from tests.support import CODE, PHONE, rent_and_receive, wait_for

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


def wait_until(page, js: str, timeout_s: float) -> None:
    """Evaluate ``js`` until it is truthy. The session page's CSP forbids eval, which
    page.wait_for_function needs; page.evaluate does not."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(js):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s: {js[:120]}")
        page.wait_for_timeout(200)


def signed_link(gw, session_id: str, owner: str = "prefect") -> str:
    """The session page's signed link (as the API and the artifact hand it out) on the served gateway."""
    link = urlsplit(session_page_url(gw.deps.settings, session_id, owner))
    return f"{gw.url}{link.path}?{link.query}"


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
        page.goto(signed_link(gw, sid))  # the link sets the session's cookie
        url = f"{gw.url}/vnc/{sid}/vnc.html?autoconnect=1&path=vnc/{sid}/websockify"
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
        page.goto(signed_link(gw, sid))
        url = f"{gw.url}{vnc_page_path(sid)}"  # the session's stream URL, opened by its link's cookie
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


def test_the_session_page_shows_the_screen_the_number_and_the_code_without_reload(
    browser, gateway_factory, make_session, launched, db_sessions, tmp_path
):
    gw = gateway_factory(token=TOKEN)
    ends = datetime.now(UTC) + timedelta(minutes=10)
    sid = make_session(State.AWAITING_CODE, session_id=launched.session_id, expires_at=ends)
    lease_id = rent_and_receive(db_sessions, sid, code=None)
    page = browser.new_page(viewport={"width": 1100, "height": 850})
    loads: list[str] = []
    page.on("load", lambda: loads.append(page.url))
    failed: list[str] = []
    page.on("requestfailed", lambda req: failed.append(f"{req.url}: {req.failure}"))
    try:
        page.goto(signed_link(gw, sid))
        assert page.url == f"{gw.url}/s/{sid}", "the link stayed in the address bar"
        assert page.text_content("#phone") == PHONE
        assert page.text_content("#code") == "waiting"
        # The screen is a same-origin frame: the page reaches into its document.
        in_screen = "() => ((document) => {js})(document.getElementById('screen').contentDocument)"
        # Other Docker networks coming and going on the shared host abort loads (ERR_NETWORK_CHANGED).
        for attempt in range(6):
            try:
                wait_until(page, in_screen.format(js=CONNECTED_JS), 10)
                break
            except AssertionError:
                if attempt == 5:
                    raise
                page.goto(f"{gw.url}/s/{sid}")  # the link's cookie opens it again
        wait_until(page, in_screen.format(js=f"({GREEN_PIXELS_JS})() > 500"), 20)
        loads.clear()

        with db_sessions.begin() as db:  # the code arrives (as the watcher records it)
            coderepo.record_code(db, lease_id, CODE, via="test", actor="test")
        wait_until(page, f"() => document.getElementById('code').textContent === '{CODE}'", 10)
        assert loads == [], "the page was reloaded"
        wait_until(page, "() => /^(9|10) min/.test(document.getElementById('left').textContent)", 5)
        assert page.text_content("#state") == "awaiting_code"

        page.on("dialog", lambda dialog: dialog.accept())
        page.click("#release")
        wait_for(lambda: [d for d, *_ in gw.runs.started] == ["release/release"], timeout=10)
        page.screenshot(path=str(tmp_path / "page.png"))
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"))
        print("\n".join(failed[-10:]), f"\nscreenshot: {tmp_path / 'failure.png'}")
        raise
    finally:
        page.close()
