"""Publishing a session to the Prefect UI: a link to its stream and a summary, keyed by session id."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NONE

from provisioning.deps import get_deps
from store import repository as repo


def mask_phone(phone: str | None) -> str:
    """Every digit but the last four hidden: +7•••••••1234."""
    if not phone:
        return "-"
    digits = [i for i, ch in enumerate(phone) if ch.isdigit()]
    hidden = set(digits[:-4])
    return "".join("•" if i in hidden else ch for i, ch in enumerate(phone))


def session_summary_markdown(session_id: str) -> tuple[str, str | None]:
    with get_deps().sessions.begin() as db:
        s = repo.get_session(db, session_id)
        # The newest number actually bought (failed purchase attempts have no price).
        lease = next(
            (x for x in reversed(repo.leases_for_session(db, session_id)) if x.price is not None), None
        )
        price = f"{lease.price} {lease.currency}" if lease is not None else "-"
        rows = [
            ("Session", f"`{s.id}`"),
            ("State", f"**{s.state}**"),
            ("Phone", mask_phone(s.phone_number)),
            ("Provider", s.provider or "-"),
            ("Price", price),
            ("Service / country", f"{s.service} / {s.country}"),
            ("Stream", f"[open]({s.stream_url})" if s.stream_url else "-"),
            ("Code", "received" if s.verification_code else "waiting"),
            ("Expires", s.expires_at.isoformat(timespec="seconds") if s.expires_at else "-"),
        ]
        markdown = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
        if s.last_error:
            markdown += f"\n\n**Last error:** {s.last_error[:500]}"
        return markdown, s.stream_url


@task(name="publish-session", cache_policy=NONE)
def publish_session(session_id: str) -> None:
    markdown, stream_url = session_summary_markdown(session_id)
    create_markdown_artifact(
        markdown=markdown, key=f"session-{session_id}", description=f"Session {session_id}"
    )
    if stream_url:
        create_link_artifact(link=stream_url, link_text=f"Stream of {session_id}", key=f"stream-{session_id}")
