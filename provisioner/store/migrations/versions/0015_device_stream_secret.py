"""devices.stream_secret: the per-device secret a stream and its VNC server require

Revision ID: 0015_device_stream_secret
Revises: 0014_host_tls

Made when a device is recorded (steps.devices.record_device); the gateway presents it to the
stream (HTTP Basic) and answers the VNC server's password challenge with it (gateway.rfb).
Devices recorded before this revision have none: their streams stay open as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_device_stream_secret"
down_revision: str | None = "0014_host_tls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("stream_secret", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "stream_secret")
