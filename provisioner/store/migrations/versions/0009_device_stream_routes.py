"""devices.stream_route: where the gateway reaches each device's stream (host:port)

Revision ID: 0009_device_stream_routes
Revises: 0008_lease_outcomes

Recorded where a device boots and where its stream is healed, in every mode, so the gateway reads
stream routes from the database only (it needs no Docker engine). Devices placed on a hosts-table
host already had their route in stream_url (the host's stream address and published port): it is
copied. A single-engine device booted before this revision has no route: its session's stream
answers 503 "stream down" until the next reconcile pass records it (heal_stream, reason "no stream
route recorded", which keeps the running stream).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_device_stream_routes"
down_revision: str | None = "0008_lease_outcomes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("stream_route", sa.String(255), nullable=True))
    op.execute(
        """
        UPDATE devices SET stream_route = substring(stream_url from '^http://([^/?#]+)')
        WHERE stream_url IS NOT NULL AND host IN (SELECT name FROM hosts)
        """
    )


def downgrade() -> None:
    op.drop_column("devices", "stream_route")
