"""sessions: the accepted request, who asked, the idempotency key, run submissions, device down since

Revision ID: 0005_durable_accept
Revises: 0004_provider_catalogs
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_durable_accept"
down_revision: str | None = "0004_provider_catalogs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("request", postgresql.JSONB(), nullable=True))
    op.add_column("sessions", sa.Column("requested_by", sa.String(128), nullable=True))
    op.add_column("sessions", sa.Column("idempotency_key", sa.String(256), nullable=True))
    op.add_column(
        "sessions", sa.Column("submissions", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column("sessions", sa.Column("device_down_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ux_sessions_idempotency_key", "sessions", ["idempotency_key"], unique=True)
    op.create_index("ix_sessions_flow_run_id", "sessions", ["flow_run_id"])


def downgrade() -> None:
    op.drop_index("ix_sessions_flow_run_id", table_name="sessions")
    op.drop_index("ux_sessions_idempotency_key", table_name="sessions")
    op.drop_column("sessions", "device_down_since")
    op.drop_column("sessions", "submissions")
    op.drop_column("sessions", "idempotency_key")
    op.drop_column("sessions", "requested_by")
    op.drop_column("sessions", "request")
