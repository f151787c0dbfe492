"""Codes: the one "record a code" function, and a flow's wait for its code on the database.

Three writers feed a lease its code, all through `record_result` / `record_code`: the code watcher
(`watcher/`, one loop per provider account), the gateway's webhook route, and a waiting flow's own
polling when no watcher is alive. Each write is a conditional UPDATE (exactly once per SMS) plus a
NOTIFY on the lease's channel in the same transaction. `wait_for_code` LISTENs on that channel and
reads the lease row; it polls the provider itself only while no watcher beats for its provider.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType

import psycopg
from sqlalchemy import make_url

from providers.base import Cancelled, CheckResult, CodeReceived, Expired, Lease
from providers.errors import MalformedReply, NotSupported, TransientError, UnavailableError
from provisioner.steps.deps import Deps
from provisioner.store import LIVE, LeaseOutcome, LeaseRow, State
from provisioner.store import codes as store_codes
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.store.states import ENDING

log = logging.getLogger(__name__)

# Unparseable or unknown status replies in a row tolerated while polling for a code.
MAX_NOISY_POLLS = 5
UNCLEAR = "unclear replies"

# Lease outcomes that end a wait without a code (the provider or someone else closed it).
_ENDED_WITHOUT_CODE = frozenset(
    {LeaseOutcome.CANCELLED, LeaseOutcome.EXPIRED, LeaseOutcome.FAILED, LeaseOutcome.FINISHED}
)


@dataclass(frozen=True)
class CodeResult:
    """What waiting for a code ended with: a code, or why there is none."""

    code: str | None
    reason: str


# A flow's own polls run every `poll_initial_s` for this long after its wait began (right after the
# number is bought: when most codes come), then back off.
FAST_POLL_FOR_S = 20.0


def poll_delay(
    waited_s: float, *, initial_s: float, max_s: float, fast_for_s: float = FAST_POLL_FOR_S
) -> float:
    """Seconds until a flow's next own poll, ``waited_s`` into its wait for a code.

    ``initial_s`` while ``waited_s`` < ``fast_for_s``; then ``initial_s`` plus half the time past
    ``fast_for_s``, at most ``max_s`` (1 s until 20 s, 2 s at 22 s, 10 s from 38 s by default).
    """
    if waited_s < fast_for_s:
        return min(initial_s, max_s)
    return min(max_s, initial_s + (waited_s - fast_for_s) / 2)


def record_code(deps: Deps, lease_id: int, code: str, *, via: str, actor: str) -> bool:
    """Write a code into its lease, session and event log once, and NOTIFY; False if already there."""
    with deps.sessions.begin() as db:
        return store_codes.record_code(db, lease_id, code, via=via, actor=actor)


def record_code_for(deps: Deps, provider: str, activation_id: str, code: str, *, via: str, actor: str) -> str:
    """Record a code named by the provider's activation id (webhooks): "recorded", "duplicate"
    (this lease already has it, or no longer waits) or "unknown activation"."""
    with deps.sessions.begin() as db:
        lease_id = store_codes.lease_for_activation(db, provider, activation_id)
        if lease_id is None:
            return "unknown activation"
        recorded = store_codes.record_code(db, lease_id, code, via=via, actor=actor)
    return "recorded" if recorded else "duplicate"


def record_result(deps: Deps, lease_id: int, result: CheckResult, *, via: str, actor: str) -> bool:
    """Record what a status check said: a code, or the provider's end of the rental. Waiting: nothing."""
    if isinstance(result, CodeReceived):
        return record_code(deps, lease_id, result.code, via=via, actor=actor)
    if isinstance(result, Cancelled | Expired):
        outcome = LeaseOutcome.CANCELLED if isinstance(result, Cancelled) else LeaseOutcome.EXPIRED
        with deps.sessions.begin() as db:
            return store_codes.record_end(db, lease_id, outcome, result.status)
    return False


def watcher_alive(deps: Deps, provider: str) -> bool:
    with deps.sessions() as db:
        return store_codes.watcher_alive(db, provider, deps.settings.codes.stale_after_s)


def plain_dsn(url: str) -> str:
    """A libpq DSN (for psycopg) from the SQLAlchemy URL of the settings."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class CodeListener:
    """An autocommit psycopg connection LISTENing on one lease's channel.

    Open it before reading the lease row: a code written in between is then either in the row or
    in the notification queue, never lost.
    """

    def __init__(self, dsn: str, lease_id: int) -> None:
        self.dsn = dsn
        self.channel = store_codes.channel(lease_id)
        self.conn: psycopg.Connection | None = None

    def __enter__(self) -> CodeListener:
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.conn.execute(f'LISTEN "{self.channel}"')
        return self

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s``; True when a notification for the lease arrived."""
        assert self.conn is not None
        got = False
        for _ in self.conn.notifies(timeout=max(0.0, timeout_s), stop_after=1):
            got = True
        return got

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def lease_of(row: LeaseRow) -> Lease:
    """The provider-facing value of a recorded lease."""
    return Lease(
        provider=row.provider,
        activation_id=row.activation_id or "",
        phone=row.phone or "",
        price=row.price or Decimal(0),
        currency=row.currency or "",
        bought_at=row.bought_at or datetime.now(UTC),
    )


def poll_once(deps: Deps, lease_id: int, *, actor: str) -> str:
    """Ask the provider about one lease and record the answer; returns the provider's status."""
    with deps.sessions() as db:
        lease = lease_of(db.get_one(LeaseRow, lease_id))
    try:
        result = deps.provider(lease.provider).check(lease)
    except TransientError as exc:
        log.warning("status check of %s failed (%s); checking again later", lease.activation_id, exc)
        return f"check failed: {exc.code or type(exc).__name__}"
    except (MalformedReply, UnavailableError) as exc:  # a maintenance page, an unknown status code
        log.warning("status check of %s: unclear reply (%s); checking again later", lease.activation_id, exc)
        return f"{UNCLEAR}: {exc}"
    record_result(deps, lease_id, result, via="poll", actor=actor)
    return getattr(result, "status", "code received")


def wait_for_code(
    deps: Deps,
    session_id: str,
    lease_id: int,
    *,
    timeout_s: float,
    actor: str,
    should_stop: Callable[[], str | None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> CodeResult:
    """Wait on the database until the lease has its code, ends, or ``timeout_s`` passes.

    The code watcher (or a webhook) writes the code and NOTIFYs; this wakes on the notification.
    While no watcher beats for the lease's provider, it polls the provider itself on `poll_delay`.
    Between waits it checks the session (ended by a release or reconciliation) and ``should_stop``
    (e.g. "was the flow run cancelled?"). At the deadline it asks the provider once more.
    Polling tolerates noise: an unparseable or unknown status reply is logged and counted; only
    more than MAX_NOISY_POLLS in a row end the wait (a clear answer or the timeout end it otherwise).
    """
    del sleep  # waits block on the listener's socket instead
    defaults = deps.settings.defaults
    started = time.monotonic()
    deadline = started + timeout_s
    last_status = ""
    with CodeListener(plain_dsn(deps.settings.database.url), lease_id) as listener:
        noisy = 0  # unclear status replies in a row
        final = False
        while True:
            with deps.sessions() as db:
                row = db.get_one(LeaseRow, lease_id)
                outcome, code, provider = LeaseOutcome(row.outcome), row.code, row.provider
                status = row.provider_status or ""
                state = State(repo.get_session(db, session_id).state)
            if outcome == LeaseOutcome.CODE_RECEIVED and code:
                return CodeResult(code, "code received")
            if outcome in _ENDED_WITHOUT_CODE:
                return CodeResult(None, f"the provider ended the rental ({status})")
            if final:
                break
            if state in ENDING:  # reconciliation or a release ended it meanwhile
                return CodeResult(None, f"the session ended ({state}) while waiting")
            stop_reason = should_stop()
            if stop_reason:
                return CodeResult(None, stop_reason)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # Check one last time before giving the number up: the SMS may have just come.
                last_status = poll_once(deps, lease_id, actor=actor)
                final = True
                continue
            if not watcher_alive(deps, provider):
                last_status = poll_once(deps, lease_id, actor=actor)
                noisy = noisy + 1 if last_status.startswith(UNCLEAR) else 0
                if noisy > MAX_NOISY_POLLS:
                    log.warning("%d unclear status replies in a row for lease %d: giving up", noisy, lease_id)
                    last_status = f"{noisy} {UNCLEAR} in a row from {provider}"
                    break
                if noisy:
                    log.info("unclear status reply %d in a row (of %d tolerated)", noisy, MAX_NOISY_POLLS)
            delay = poll_delay(
                time.monotonic() - started, initial_s=defaults.poll_initial_s, max_s=defaults.poll_max_s
            )
            listener.wait(min(delay, remaining))
    with deps.sessions.begin() as db:
        store_codes.note_waiting(db, lease_id, last_status)
    if noisy > MAX_NOISY_POLLS:
        return CodeResult(None, last_status)
    return CodeResult(None, f"no code within {timeout_s:g} s")


class AnotherCodeRefused(Exception):
    """Another code cannot be asked for this session now; the message says why."""


def request_another_code(deps: Deps, session_id: str, *, actor: str) -> int:
    """Ask the provider for the next SMS on the session's number (setStatus 3 / setOperationRevise)
    and put its lease back to waiting; the watcher, a webhook or the flow's polling records it.
    Returns the lease id. Raises SessionNotFound, AnotherCodeRefused, or the provider's error."""
    with deps.sessions() as db:
        state = State(repo.get_session(db, session_id).state)
        if state not in LIVE:
            raise AnotherCodeRefused(f"session {session_id} is {state}: no number to ask on")
        leases = lease_repo.leases_for_session(db, session_id)
        row = next((x for x in reversed(leases) if x.outcome == LeaseOutcome.CODE_RECEIVED), None)
        if row is None:
            finished = any(x.outcome == LeaseOutcome.FINISHED and x.code for x in leases)
            why = (
                "its number was finished at verification (set PROVISIONER_CODES__KEEP_NUMBER_OPEN=true)"
                if finished
                else "its number has no code yet"
            )
            raise AnotherCodeRefused(f"session {session_id}: {why}")
        lease_id, lease = row.id, lease_of(row)
    try:
        moved = deps.provider(lease.provider).request_another_code(lease)
    except NotSupported as exc:
        raise AnotherCodeRefused(f"session {session_id}: {exc}") from exc
    new_id = getattr(moved, "activation_id", None) or lease.activation_id
    with deps.sessions.begin() as db:
        store_codes.reopen_for_another_code(
            db, lease_id, activation_id=new_id if new_id != lease.activation_id else None
        )
        repo.record_event(db, session_id, reason=f"another code requested on {lease.provider}", actor=actor)
    return lease_id
