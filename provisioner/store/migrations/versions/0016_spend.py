"""spend: budgets per owner, the cap and charge on each lease, provider accounts

Revision ID: 0016_spend
Revises: 0015_device_stream_secret

number_leases.owner (the session's owner, copied when the purchase is recorded: budgets count by
it), .cap (the effective cap in the account's currency: what a pending purchase reserves),
.price_source (where the recorded price came from: reply, quote or cap) and .overcharged (charged
above the cap, cancelled at once). budgets: a daily budget per owner. provider_accounts: each
account's currency as the provider reports it and its last balance.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_spend"
down_revision: str | None = "0015_device_stream_secret"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("number_leases", sa.Column("owner", sa.String(32), nullable=True))
    op.add_column("number_leases", sa.Column("cap", sa.Numeric(12, 4), nullable=True))
    op.add_column("number_leases", sa.Column("price_source", sa.String(16), nullable=True))
    op.add_column(
        "number_leases",
        sa.Column("overcharged", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute("UPDATE number_leases l SET owner = s.owner FROM sessions s WHERE s.id = l.session_id")
    op.create_index("ix_number_leases_requested_at", "number_leases", ["requested_at"])
    op.create_table(
        "budgets",
        sa.Column("owner", sa.String(32), primary_key=True),
        sa.Column("amount", sa.Numeric(12, 4), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "provider_accounts",
        sa.Column("provider", sa.String(32), primary_key=True),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("currency_source", sa.String(32), nullable=True),
        sa.Column("balance", sa.Numeric(14, 4), nullable=True),
        sa.Column("balance_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("low", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("provider_accounts")
    op.drop_table("budgets")
    op.drop_index("ix_number_leases_requested_at", table_name="number_leases")
    for column in ("overcharged", "price_source", "cap", "owner"):
        op.drop_column("number_leases", column)
