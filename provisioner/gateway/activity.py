"""Screen activity: while a person's browser keeps a session's stream open, the gateway stamps the
session's device (devices.last_activity_at), at most once per session per `activity_write_s`.
Reconciliation releases a verified session whose device saw no activity for its idle timeout."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.concurrency import run_in_threadpool

from provisioner.steps.deps import Deps
from provisioner.store import devices as devrepo

log = logging.getLogger(__name__)


class ActivityRecorder:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.interval_s = deps.settings.gateway.activity_write_s
        self._last: dict[str, float] = {}

    async def touch(self, session_id: str) -> None:
        """Record activity now unless it was recorded less than `interval_s` ago."""
        now = time.monotonic()
        if now - self._last.get(session_id, float("-inf")) < self.interval_s:
            return
        self._last[session_id] = now
        if len(self._last) > 10_000:
            self._last = {session_id: now}

        def write() -> None:
            with self.deps.sessions.begin() as db:
                devrepo.touch_session_activity(db, session_id)

        try:
            await run_in_threadpool(write)
        except Exception:  # a missed stamp only brings the idle release closer; never break a stream
            log.warning("could not record activity of session %s", session_id, exc_info=True)

    async def while_open(self, session_id: str) -> None:
        """Stamp activity for as long as the stream stays open (cancelled when it closes)."""
        while True:
            await self.touch(session_id)
            await asyncio.sleep(self.interval_s)
