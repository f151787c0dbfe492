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


class PageLog:
    """Records a page's navigations, its failed requests, and its API calls that change something
    or are refused (the Prefect UI's toasts say little and vanish after 5 s; these replies say
    what they were about)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.events: list[str] = []
        self._replies: list[Response] = []
        page.on("framenavigated", self._navigated)
        page.on("requestfailed", self._failed)
        page.on("response", self._reply)

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
            toasts = self.page.locator(".p-toast").all_inner_texts()
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
        return
    except PlaywrightError as exc:
        failure = f"{step}: {(exc.message or str(exc)).splitlines()[0]}"
    pytest.fail(f"{failure}\n{log.report(screenshot)}", pytrace=False)
