"""deployment: the identity of this deployment (one row), recorded by `provisioner migrate`

Revision ID: 0013_deployment
Revises: 0012_clients

Containers are labelled with the instance id; a process refuses to start when the one it is
configured with differs from this row's (store.identity).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_deployment"
down_revision: str | None = "0012_clients"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployment",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("instance_id", sa.String(31), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_deployment_one_row"),
    )


def downgrade() -> None:
    op.drop_table("deployment")
