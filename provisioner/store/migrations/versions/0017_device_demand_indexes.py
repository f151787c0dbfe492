"""device demand indexes: the pool's demand query reads recent rows, never the whole history

Revision ID: 0017_device_demand_indexes
Revises: 0016_spend

ix_devices_claimed_at: the claims within the demand window. ix_devices_profile_ready_at (partial,
devices with a recorded boot time): a profile's last boots, newest first. Without them each
maintain-pool pass read every device ever recorded.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_device_demand_indexes"
down_revision: str | None = "0016_spend"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_devices_claimed_at", "devices", ["claimed_at"])
    op.create_index(
        "ix_devices_profile_ready_at",
        "devices",
        ["profile", "ready_at"],
        postgresql_where=sa.text("boot_s IS NOT NULL AND ready_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_devices_profile_ready_at", table_name="devices")
    op.drop_index("ix_devices_claimed_at", table_name="devices")
