"""The deployment's identity: one instance id per database, recorded once by `provisioner migrate`.

Every container a deployment starts is labelled with its instance id, and reconciliation acts only
on containers with that label; so two deployments sharing an engine must never share an id. The
id lives in the database (the deployment table), not only in each process's environment: a
process configured with another id (PROVISIONER_INSTANCE_ID) refuses to start.

    IdentityError
    ├── IdentityMissing    the database has no identity yet (run `provisioner migrate`)
    └── IdentityMismatch   the configured id is not the database's
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from provisioner.store.models import DeploymentRow

INSTANCE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,30}$"


class IdentityError(Exception):
    """The process cannot run as this deployment."""


class IdentityMissing(IdentityError):
    def __init__(self) -> None:
        super().__init__("the database records no deployment identity: run `provisioner migrate` first")


class IdentityMismatch(IdentityError):
    def __init__(self, *, configured: str, recorded: str) -> None:
        self.configured = configured
        self.recorded = recorded
        super().__init__(
            f"PROVISIONER_INSTANCE_ID is {configured!r} but this database belongs to deployment "
            f"{recorded!r}: unset PROVISIONER_INSTANCE_ID (the database's id is used) or point "
            "PROVISIONER_DATABASE__URL at that deployment's own database"
        )


def new_instance_id() -> str:
    """A fresh id: 'p' and 10 hex digits (a valid label value and container name part)."""
    return "p" + secrets.token_hex(5)


def read_identity(session: Session) -> str | None:
    return session.scalar(select(DeploymentRow.instance_id).where(DeploymentRow.id == 1))


def record_identity(session: Session, requested: str | None = None) -> str:
    """The database's identity, recorded now (as `requested`, else generated) when it has none.

    Raises IdentityMismatch when one is recorded and `requested` names another."""
    session.execute(
        insert(DeploymentRow)
        .values(id=1, instance_id=requested or new_instance_id())
        .on_conflict_do_nothing(index_elements=[DeploymentRow.id])
    )
    return check_identity(session, requested)


def check_identity(session: Session, configured: str | None) -> str:
    """The instance id this process runs as: the database's, which `configured` must equal when set."""
    recorded = read_identity(session)
    if recorded is None:
        raise IdentityMissing()
    if configured and configured != recorded:
        raise IdentityMismatch(configured=configured, recorded=recorded)
    return recorded
