"""Artifacts in the Prefect UI: a markdown artifact updated in place, tables, progress bars."""

from __future__ import annotations

from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort


def publish_markdown(key: str, markdown: str, *, description: str) -> None:
    """Create the artifact ``key``, or update the newest one of that key in place."""
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


def publish_table(key: str, table: list[dict[str, str]], *, description: str) -> None:
    """A new version of the table artifact ``key`` (the UI shows the newest)."""
    create_table_artifact(table=table, key=key, description=description)


def create_progress(key: str, *, description: str) -> UUID:
    """A progress artifact ``key`` at 0 %; its id for update_progress."""
    return create_progress_artifact(0.0, key=key, description=description)


def update_progress(artifact_id: UUID, percent: float) -> None:
    with get_client(sync_client=True) as client:
        client.update_artifact(artifact_id, ArtifactUpdate(data=percent))
