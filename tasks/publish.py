"""Publishing a session to the Prefect UI: one artifact per session (key ``session-<id>``),
updated in place as the session moves, with its stream link through the gateway (a URL that
stays valid when reconciliation heals the stream); flow runs named and tagged after their session.
"""

from __future__ import annotations

import logging
import threading
import time
from uuid import UUID

from prefect import task
from prefect.cache_policies import NONE

from provisioner.prefect_api.artifacts import create_progress, publish_markdown, update_progress
from provisioner.prefect_api.runs import label_current_run
from provisioner.runtime import load_profiles
from provisioner.steps.deps import get_deps
from provisioner.steps.links import session_page_url
from provisioner.store import LIVE, TERMINAL, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from provisioner.store import spend as spendrepo
from provisioner.values.phones import mask_phone

SESSION_TAG_PREFIX = "session:"
log = logging.getLogger(__name__)


def session_artifact_key(session_id: str) -> str:
    return f"session-{session_id}"


def label_flow_run(kind: str, session_id: str) -> None:
    """Name the current flow run ``<kind>-<session>`` and tag it ``session:<id>`` (tags kept)."""
    label_current_run(f"{kind}-{session_id}", f"{SESSION_TAG_PREFIX}{session_id}")


def _code_row(state: State, has_code: bool) -> str:
    if has_code:
        return "received"  # never the code itself
    return "none" if state in TERMINAL else "waiting"


def session_summary_markdown(session_id: str) -> str:
    deps = get_deps()
    with deps.sessions.begin() as db:
        s = repo.get_session(db, session_id)
        state = State(s.state)
        # The newest number actually bought (failed purchase attempts have no price).
        lease = next(
            (x for x in reversed(lease_repo.leases_for_session(db, session_id)) if x.price is not None), None
        )
        price = f"{lease.price} {lease.currency}" if lease is not None else "-"
        cost = spendrepo.session_cost(db, session_id)
        rows = [
            ("Session", f"`{s.id}`"),
            ("State", f"**{s.state}**"),
            ("Phone", mask_phone(s.phone_number)),
            ("Provider", s.provider or "-"),
            ("Price", price),
            ("Cost", ", ".join(f"{a:.4f} {c}" for c, a in sorted(cost.items())) or "-"),
            ("Service / country", f"{s.service} / {s.country}"),
            # The gateway's session page (screen, number, code), signed for the session's owner until
            # it expires; never a published port, and only while the session is live.
            ("Session page", f"[open]({_page(deps, s)})" if s.stream_url and state in LIVE else "-"),
            ("Code", _code_row(state, bool(s.verification_code))),
            ("Expires", s.expires_at.isoformat(timespec="seconds") if s.expires_at else "-"),
        ]
        if state in TERMINAL and s.last_error:
            rows.insert(2, ("Reason", _cell(s.last_error)))
        markdown = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
        if state not in TERMINAL and s.last_error:
            markdown += f"\n\n**Last error:** {s.last_error[:500]}"
        return markdown


def _page(deps, s) -> str:  # noqa: ANN001 - Deps, SessionRow
    return session_page_url(deps.settings, s.id, s.owner, s.expires_at)


def _cell(text: str) -> str:
    return text[:500].replace("|", "\\|").replace("\n", " ")


def publish(session_id: str) -> None:
    """Create the session's artifact, or update the existing one in place (works outside a flow run:
    the worker's cancellation and crash hooks publish the final state too)."""
    publish_markdown(
        session_artifact_key(session_id),
        session_summary_markdown(session_id),
        description=f"Session {session_id}",
    )


@task(name="publish-session", cache_policy=NONE)
def publish_session(session_id: str) -> None:
    """Create the session's artifact, or update the existing one in place."""
    publish(session_id)


class Progress:
    """A progress artifact (key ``session-<id>-<what>``) for a wait with a deadline: the share of the
    deadline elapsed, updated every ``every_s`` seconds from a thread, 100 when the wait ends."""

    def __init__(self, session_id: str, what: str, description: str, deadline_s: float, every_s: float = 2.0):
        self.key = f"{session_artifact_key(session_id)}-{what}"
        self.description, self.deadline_s, self.every_s = description, deadline_s, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"progress-{what}")
        self._id: UUID | None = None
        self._started = 0.0

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        self._id = create_progress(self.key, description=self.description)
        self._thread.start()
        return self

    def _set(self, percent: float) -> None:
        """Update the bar; a failed update is logged, never raised (a bar never fails a provision)."""
        try:
            update_progress(self._id, percent)
        except Exception as exc:  # noqa: BLE001
            log.warning("progress artifact %s not updated: %s", self.key, type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            elapsed = time.monotonic() - self._started
            self._set(min(99.0, round(100 * elapsed / self.deadline_s, 1)))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if exc[0] is None:
            self._set(100.0)


def boot_deadline_s(profile: str) -> float:
    """How long a cold boot of ``profile`` may take (the readiness deadline the boot waits on)."""
    settings = get_deps().settings
    override = settings.docker.readiness_timeout_s
    return override or load_profiles(settings.docker.profiles_file)[profile].boot_timeout_s
