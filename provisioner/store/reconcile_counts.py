"""Counts of the actions reconcile passes took, by kind: one row per kind, summed by every pass.

A pass's actions write no common record (a removed container or network leaves no row, a closed
lease no session event), so each pass adds its counts here after acting and GET /metrics reads
them in one query. Dry runs count nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from provisioner.store.models import ReconcileCountRow


def add_pass_counts(db: Session, outcomes: Iterable[tuple[str, bool]]) -> None:
    """Add one pass's actions, given as (kind, ok) pairs, to the totals."""
    done: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for kind, ok in outcomes:
        (done if ok else failed)[kind] += 1
    for kind in sorted(done.keys() | failed.keys()):  # in kind order: concurrent passes cannot deadlock
        statement = insert(ReconcileCountRow).values(kind=kind, done=done[kind], failed=failed[kind])
        db.execute(
            statement.on_conflict_do_update(
                index_elements=[ReconcileCountRow.kind],
                set_={
                    "done": ReconcileCountRow.done + statement.excluded.done,
                    "failed": ReconcileCountRow.failed + statement.excluded.failed,
                    "updated_at": func.now(),
                },
            )
        )


def action_counts(db: Session) -> dict[str, tuple[int, int]]:
    """kind -> (done, failed) over every pass so far."""
    rows = db.execute(select(ReconcileCountRow.kind, ReconcileCountRow.done, ReconcileCountRow.failed))
    return {kind: (done, failed) for kind, done, failed in rows}
