"""reconcile_action_counts: actions taken by reconcile passes, done and failed, by kind

Revision ID: 0010_reconcile_action_counts
Revises: 0009_device_stream_routes

Each pass adds its counts (store.reconcile_counts); GET /metrics reports them as
provisioner_reconcile_actions_total and provisioner_reconcile_action_failures_total. Counting
starts at this revision: earlier passes are not in it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_reconcile_action_counts"
down_revision: str | None = "0009_device_stream_routes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconcile_action_counts",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("done", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("kind"),
    )


def downgrade() -> None:
    op.drop_table("reconcile_action_counts")
