"""devices.down_since and devices.down_condition: one device-down record for every device

Revision ID: 0011_device_down
Revises: 0010_reconcile_action_counts

Reconciliation had two records for one idea: sessions.device_down_since (a session's device not
running) and devices.health/health_since (a running device unhealthy). Both become the device's
down_since (the first pass that saw it down) and down_condition (missing, exited, paused,
restarting, unhealthy, ...), for session and pool devices alike (reconciler.down). Existing
records are carried over (a session's mark as condition 'unknown', which the next pass replaces
while keeping the time); the downgrade carries them back.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_device_down"
down_revision: str | None = "0010_reconcile_action_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("down_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("devices", sa.Column("down_condition", sa.String(16), nullable=True))
    op.execute(
        """
        UPDATE devices SET down_since = health_since, down_condition = 'unhealthy'
        WHERE health = 'unhealthy' AND health_since IS NOT NULL
        """
    )
    op.execute(
        """
        UPDATE devices d
        SET down_since = LEAST(d.down_since, s.device_down_since),
            down_condition = COALESCE(d.down_condition, 'unknown')
        FROM sessions s
        WHERE s.device_id = d.id AND s.device_down_since IS NOT NULL
        """
    )
    op.drop_column("devices", "health")
    op.drop_column("devices", "health_since")
    op.drop_column("sessions", "device_down_since")


def downgrade() -> None:
    op.add_column("sessions", sa.Column("device_down_since", sa.DateTime(timezone=True), nullable=True))
    op.add_column("devices", sa.Column("health", sa.String(16), nullable=True))
    op.add_column("devices", sa.Column("health_since", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        """
        UPDATE devices SET health = 'unhealthy', health_since = down_since
        WHERE down_condition = 'unhealthy'
        """
    )
    op.execute(
        """
        UPDATE sessions s SET device_down_since = d.down_since
        FROM devices d
        WHERE s.device_id = d.id AND d.down_since IS NOT NULL AND d.down_condition <> 'unhealthy'
        """
    )
    op.drop_column("devices", "down_condition")
    op.drop_column("devices", "down_since")
