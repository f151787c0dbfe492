"""devices table; sessions.device_id and sessions.idle_timeout_s

Revision ID: 0007_devices
Revises: 0006_hosts
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_devices"
down_revision: str | None = "0006_hosts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(12), primary_key=True),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("device_container", sa.String(128), nullable=False),
        sa.Column("stream_container", sa.String(128), nullable=False),
        sa.Column("stream_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("boot_s", sa.Float(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("health", sa.String(16), nullable=True),
        sa.Column("health_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.create_index("ix_devices_state_profile", "devices", ["state", "profile"])
    op.add_column("sessions", sa.Column("device_id", sa.String(12), nullable=True))
    op.add_column("sessions", sa.Column("idle_timeout_s", sa.Float(), nullable=True))
    op.create_foreign_key("sessions_device_id_fkey", "sessions", "devices", ["device_id"], ["id"])
    op.create_index("ux_sessions_device_id", "sessions", ["device_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_sessions_device_id", table_name="sessions")
    op.drop_constraint("sessions_device_id_fkey", "sessions", type_="foreignkey")
    op.drop_column("sessions", "idle_timeout_s")
    op.drop_column("sessions", "device_id")
    op.drop_index("ix_devices_state_profile", table_name="devices")
    op.drop_table("devices")
