"""hosts: TLS files of each remote engine, and the lab-only plain TCP switch

Revision ID: 0014_host_tls
Revises: 0013_deployment

Paths only (the files stay on the machines that call the engine); runtime.engines refuses plain
tcp:// off this machine unless insecure_plain_tcp is set.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_host_tls"
down_revision: str | None = "0013_deployment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("tls_ca", sa.Text(), nullable=True))
    op.add_column("hosts", sa.Column("tls_cert", sa.Text(), nullable=True))
    op.add_column("hosts", sa.Column("tls_key", sa.Text(), nullable=True))
    op.add_column(
        "hosts",
        sa.Column("insecure_plain_tcp", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    for column in ("insecure_plain_tcp", "tls_key", "tls_cert", "tls_ca"):
        op.drop_column("hosts", column)
