"""number_leases.code/code_at (the code recorded exactly once) and code_watchers (watcher heartbeats)

Revision ID: 0003_lease_codes
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_lease_codes"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("number_leases", sa.Column("code", sa.String(length=64), nullable=True))
    op.add_column("number_leases", sa.Column("code_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "code_watchers",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("watcher", sa.String(length=128), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("provider"),
    )


def downgrade() -> None:
    op.drop_table("code_watchers")
    op.drop_column("number_leases", "code_at")
    op.drop_column("number_leases", "code")
