"""Publishing a session to the Prefect UI: one artifact per session (key ``session-<id>``),
updated in place as the session moves, with its stream link through the gateway (a URL that
stays valid when reconciliation heals the stream); flow runs named and tagged after their session.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.runtime import flow_run

from provisioner.steps.deps import get_deps
from provisioner.steps.streams import gateway_stream_url
from provisioner.store import repository as repo

SESSION_TAG_PREFIX = "session:"


def session_artifact_key(session_id: str) -> str:
    return f"session-{session_id}"


def label_flow_run(kind: str, session_id: str) -> None:
    """Name the current flow run ``<kind>-<session>`` and tag it ``session:<id>`` (tags kept)."""
    if not flow_run.id:
        return
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        tags = [*run.tags, f"{SESSION_TAG_PREFIX}{session_id}"]
        client.update_flow_run(flow_run.id, name=f"{kind}-{session_id}", tags=list(dict.fromkeys(tags)))


def mask_phone(phone: str | None) -> str:
    """Every digit but the last four hidden: +7•••••••1234."""
    if not phone:
        return "-"
    digits = [i for i, ch in enumerate(phone) if ch.isdigit()]
    hidden = set(digits[:-4])
    return "".join("•" if i in hidden else ch for i, ch in enumerate(phone))


def session_summary_markdown(session_id: str) -> str:
    deps = get_deps()
    with deps.sessions.begin() as db:
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
            ("Stream", f"[open]({gateway_stream_url(deps, s.id)})" if s.stream_url else "-"),
            ("Code", "received" if s.verification_code else "waiting"),
            ("Expires", s.expires_at.isoformat(timespec="seconds") if s.expires_at else "-"),
        ]
        markdown = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
        if s.last_error:
            markdown += f"\n\n**Last error:** {s.last_error[:500]}"
        return markdown


@task(name="publish-session", cache_policy=NONE)
def publish_session(session_id: str) -> None:
    """Create the session's artifact, or update the existing one in place."""
    markdown = session_summary_markdown(session_id)
    key = session_artifact_key(session_id)
    description = f"Session {session_id}"
    with get_client(sync_client=True) as client:
        existing = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
        if existing:
            client.update_artifact(existing[0].id, ArtifactUpdate(data=markdown, description=description))
            return
    create_markdown_artifact(markdown=markdown, key=key, description=description)
