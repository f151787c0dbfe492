"""clients (name, role, token hash, limits) and sessions.owner

Revision ID: 0012_clients
Revises: 0011_device_down

Every session gets an owner: the client that asked for it. Sessions written before this revision
were started either through the gateway (its one configured token: owner "operator") or from
Prefect (owner "prefect"), told apart by requested_by.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_clients"
down_revision: str | None = "0011_device_down"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("max_sessions", sa.Integer(), nullable=True),
        sa.Column("rate_per_min", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ux_clients_token_hash", "clients", ["token_hash"], unique=True)
    op.add_column("sessions", sa.Column("owner", sa.String(32), server_default="prefect", nullable=False))
    op.execute("UPDATE sessions SET owner = 'operator' WHERE requested_by LIKE 'gateway:%'")
    op.create_index("ix_sessions_owner_created_at", "sessions", ["owner", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_owner_created_at", table_name="sessions")
    op.drop_column("sessions", "owner")
    op.drop_index("ux_clients_token_hash", table_name="clients")
    op.drop_table("clients")
