"""One provider account's code watcher: lock, heartbeat, poll, record.

    standby ──(pg_try_advisory_lock)──> holder ──(lock connection lost / stop)──> standby
    holder: every poll interval, the provider's waiting leases (one query) ->
        list mode:  one check_open_activations() call serves every lease; a lease missing from
                    the list (ended, or bought after the call) is checked on its own
        each mode:  one check() per lease, each paced by the TokenBucket
        -> steps.codes.record_result() (exactly once, NOTIFY)

The advisory lock lives on its own autocommit connection: while it is held no other watcher polls
this provider; when the holder dies its connection closes, PostgreSQL releases the lock, and a
standby takes over within `standby_retry_s`. The holder beats in `code_watchers` so flows can
tell whether to poll for themselves.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import zlib

import psycopg
from sqlalchemy.exc import DBAPIError

from providers.errors import NotSupported, ProviderError, TransientError
from provisioner.steps.codes import lease_of, plain_dsn, record_result
from provisioner.steps.deps import Deps
from provisioner.store import LeaseRow
from provisioner.store import codes as store_codes
from provisioner.watcher.budget import RATE_LIMIT_CODES, TokenBucket

log = logging.getLogger(__name__)
ACTOR = "code-watcher"
LIST, EACH = "list", "each"


def lock_key(provider: str) -> int:
    """The advisory lock id of one provider account's watcher."""
    return zlib.crc32(f"provisioner-code-watcher:{provider}".encode())


def watcher_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LockLost(Exception):
    """The lock connection broke: another watcher may hold the provider now."""


class ProviderWatcher:
    """Watches one provider account; `run()` until `stop` is set (standby while another holds it)."""

    def __init__(self, deps: Deps, provider: str, stop: threading.Event, *, name: str | None = None) -> None:
        self.deps = deps
        self.provider = provider
        self.stop = stop
        self.name = name or watcher_id()
        config = deps.settings.codes
        self.config = config
        self.bucket = TokenBucket(config.requests_per_s, config.burst)
        self.mode: str | None = None
        self.holding = threading.Event()
        self.requests = 0  # provider calls made while holding the lock
        self.thread: threading.Thread | None = None

    # --- lock --------------------------------------------------------------------------------

    def run(self) -> None:
        announced = False
        while not self.stop.is_set():
            try:
                with psycopg.connect(
                    plain_dsn(self.deps.settings.database.url),
                    autocommit=True,
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=3,
                ) as conn:
                    while not self.stop.is_set():
                        if conn.execute(
                            "SELECT pg_try_advisory_lock(%s)", (lock_key(self.provider),)
                        ).fetchone()[0]:
                            break
                        if not announced:
                            log.info("%s: another watcher holds %s; standing by", self.name, self.provider)
                            announced = True
                        self.stop.wait(self.config.standby_retry_s)
                    else:
                        return
                    log.info("%s: watching %s", self.name, self.provider)
                    announced = False
                    self.holding.set()
                    try:
                        self._hold(conn)
                    finally:
                        self.holding.clear()
                        self._let_go()
            except (psycopg.OperationalError, DBAPIError, LockLost) as exc:
                log.warning("%s: %s lock connection lost (%s); standing by", self.name, self.provider, exc)
                self.stop.wait(self.config.standby_retry_s)

    def _let_go(self) -> None:
        try:
            with self.deps.sessions.begin() as db:
                store_codes.stop_beating(db, self.provider, watcher=self.name)
        except Exception as exc:  # noqa: BLE001 - the row goes stale by itself
            log.warning("%s: could not remove the heartbeat of %s: %s", self.name, self.provider, exc)

    def _beat(self, conn: psycopg.Connection) -> None:
        try:
            conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LockLost(str(exc)) from exc
        with self.deps.sessions.begin() as db:
            store_codes.beat(db, self.provider, watcher=self.name, mode=self.mode or EACH)
        self._next_beat = time.monotonic() + self.config.heartbeat_s

    def _beat_if_due(self, conn: psycopg.Connection) -> None:
        if time.monotonic() >= self._next_beat:
            self._beat(conn)

    # --- polling -------------------------------------------------------------------------------

    def _hold(self, conn: psycopg.Connection) -> None:
        client = self.deps.provider(self.provider)
        self._beat(conn)
        while not self.stop.is_set():
            started = time.monotonic()
            with self.deps.sessions() as db:
                waiting = store_codes.waiting_leases(db, self.provider)
            if waiting:
                try:
                    self._round(client, conn, waiting)
                except TransientError as exc:
                    log.warning("%s: %s poll failed (%s); next round", self.name, self.provider, exc)
                except ProviderError as exc:
                    log.error("%s: %s poll failed (%s); next round", self.name, self.provider, exc)
            while not self.stop.is_set():
                self._beat_if_due(conn)
                left = started + self.config.poll_interval_s - time.monotonic()
                if left <= 0:
                    break
                self.stop.wait(min(left, self.config.heartbeat_s))

    def _call(self, fn, *args):
        """One budgeted provider call; a rate-limit reply slows the budget down and is re-raised."""
        if not self.bucket.take(self.stop):
            raise _Stopped
        self.requests += 1
        try:
            result = fn(*args)
        except NotSupported:
            self.requests -= 1  # answered locally: nothing was sent
            self.bucket.tokens += 1
            raise
        except TransientError as exc:
            if exc.code in RATE_LIMIT_CODES:
                self.bucket.slow_down()
                log.warning(
                    "%s: %s says slow down (%s); %.2f requests/s now",
                    self.name,
                    self.provider,
                    exc.code,
                    self.bucket.rate,
                )
            raise
        self.bucket.recover()
        return result

    def _round(self, client, conn: psycopg.Connection, waiting: list[store_codes.WaitingLease]) -> None:
        try:
            pending = waiting
            if self.mode in (None, LIST):
                try:
                    listed = self._call(client.check_open_activations)
                except NotSupported:
                    if self.mode is None:
                        log.info(
                            "%s: %s cannot list activations; checking each lease", self.name, self.provider
                        )
                    self.mode = EACH
                else:
                    self.mode = LIST
                    pending = []
                    for lease in waiting:
                        result = listed.get(lease.activation_id)
                        if result is None:
                            pending.append(lease)  # ended, or bought after the list was made
                        else:
                            record_result(self.deps, lease.id, result, via="watcher", actor=ACTOR)
            for lease in pending:
                self._beat_if_due(conn)
                with self.deps.sessions() as db:
                    row = db.get_one(LeaseRow, lease.id)
                    if row.outcome != "active":
                        continue  # recorded meanwhile (a webhook, the flow's last check)
                    value = lease_of(row)
                try:
                    result = self._call(client.check, value)
                except ProviderError as exc:
                    # One lease's failure (a rate limit, a 5xx, an unclear reply) does not stop the
                    # round: the budget slowed down where it should, and the lease comes again next round.
                    if not (isinstance(exc, TransientError) and exc.code in RATE_LIMIT_CODES):
                        log.warning(
                            "%s: status of %s:%s: %s", self.name, self.provider, lease.activation_id, exc
                        )
                    continue
                record_result(self.deps, lease.id, result, via="watcher", actor=ACTOR)
        except _Stopped:
            return


class _Stopped(Exception):
    """The watcher was stopped while waiting for its budget."""
