"""Chromium for browser tests (Playwright drives the system's Chromium), and what a page did, for
a failure message a reader can act on."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Frame, Page, Request, Response

CHROMIUM = os.environ.get("PROVISIONER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
BODY_EXCERPT = 3000
# Every toast the page shows, kept in window.__toasts (the Prefect UI's vanish after 5 s).
RECORD_TOASTS_JS = """
const shown = new Map();
new MutationObserver(() => {
  window.__toasts ||= [];
  for (const card of document.querySelectorAll('.p-toast__card')) {
    if (!shown.has(card)) shown.set(card, window.__toasts.push('') - 1);
    window.__toasts[shown.get(card)] = card.innerText;
  }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""


def fetch_through_playwright(page: Page) -> None:
    """Have Playwright make the page's HTTP requests (route.fetch), not Chromium: Chromium fails
    every request in flight, loopback ones too, with net::ERR_NETWORK_CHANGED when it sees the
    host's network change, and the shared Docker engine's networks and containers change it all
    the time. Before closing the page: ``page.unroute_all(behavior="ignoreErrors")``."""
    page.route("**/*", lambda route: route.fulfill(response=route.fetch()))


class PageLog:
    """Records a page's navigations, its toasts, its failed requests, and its API calls that change
    something or are refused, with their replies (which say more than the toasts). Made before
    the page's first goto."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.events: list[str] = []
        self._replies: list[Response] = []
        page.on("framenavigated", self._navigated)
        page.on("requestfailed", self._failed)
        page.on("response", self._reply)
        page.add_init_script(RECORD_TOASTS_JS)

    def _navigated(self, frame: Frame) -> None:
        if frame == self.page.main_frame:
            self.events.append(f"url {frame.url}")

    def _failed(self, request: Request) -> None:
        self.events.append(f"failed {request.method} {request.url}: {request.failure}")

    def _reply(self, response: Response) -> None:
        if "/api/" in response.url and (response.request.method != "GET" or response.status >= 400):
            self.events.append(f"{response.request.method} {response.url} -> {response.status}")
            self._replies.append(response)

    def report(self, screenshot: Path) -> str:
        """The page as it is (url, toasts, body excerpt), what it did, and a screenshot."""
        lines = [f"url: {self.page.url}"]
        with contextlib.suppress(PlaywrightError):
            self.page.screenshot(path=str(screenshot), full_page=True)
            lines.append(f"screenshot: {screenshot}")
        with contextlib.suppress(PlaywrightError):
            toasts = self.page.evaluate("window.__toasts || []")
            lines.append(f"toasts: {[' '.join(t.split()) for t in toasts]}")
        lines += ["events:", *(f"  {event}" for event in self.events[-40:])]
        for response in self._replies[-10:]:
            with contextlib.suppress(PlaywrightError):
                body = response.text()[:400]
                lines.append(f"reply of {response.request.method} {response.url}: {body}")
        with contextlib.suppress(PlaywrightError):
            lines += ["body:", self.page.inner_text("body")[:BODY_EXCERPT]]
        return "\n".join(lines)


@contextlib.contextmanager
def explained(log: PageLog, step: str, screenshot: Path) -> Iterator[None]:
    """A Playwright failure inside becomes a test failure naming the step and showing the page."""
    try:
        yield
    except PlaywrightError as exc:
        failure = f"{step}: {(exc.message or str(exc)).splitlines()[0]}\n{log.report(screenshot)}"
        raise pytest.fail.Exception(failure, pytrace=False) from None
