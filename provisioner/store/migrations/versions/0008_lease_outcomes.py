"""number_leases: retries, call_ended_at, attention (the lease outcome table's bookkeeping)

Revision ID: 0008_lease_outcomes
Revises: 0007_devices

Existing outcome values keep their names; `unknown` is new. Leases left `pending` without an
activation id by a crash are treated as unknown by reconciliation, so no data changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_lease_outcomes"
down_revision: str | None = "0007_devices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "number_leases", sa.Column("retries", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("number_leases", sa.Column("call_ended_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("number_leases", sa.Column("attention", sa.Text(), nullable=True))


def downgrade() -> None:
    # needs_attention and unknown rows stay as they are: the old code reads them as closed outcomes.
    op.drop_column("number_leases", "attention")
    op.drop_column("number_leases", "call_ended_at")
    op.drop_column("number_leases", "retries")
