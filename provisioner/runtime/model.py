"""Names, ownership labels and the small values the runtime returns."""

from __future__ import annotations

import base64
import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

MANAGED_BY = "provisioner"

LABEL_MANAGED_BY = "provisioner.managed-by"
LABEL_INSTANCE = "provisioner.instance"
LABEL_DEVICE = "provisioner.device"  # the device id (a pool device has no session yet)
LABEL_ROLE = "provisioner.role"
LABEL_CREATED_AT = "provisioner.created-at"
LABEL_PROFILE = "provisioner.profile"  # device containers only: the profile they were launched with
LABEL_IMAGE = "provisioner.image"  # the image reference (tag) a container was created from, by its id

DEVICE_ID_RE = re.compile(r"^[a-z][a-z0-9]{11}$")
INSTANCE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


class Role(enum.StrEnum):
    DEVICE = "device"
    STREAM = "stream"


def check_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.match(device_id):
        raise ValueError(f"device id {device_id!r} must be 12 characters [a-z0-9] starting with a letter")
    return device_id


def container_name(instance_id: str, device_id: str, role: Role) -> str:
    """`prov-<instance>-<device>-<role>`: unique per deployment, device and role."""
    return f"prov-{instance_id}-{check_device_id(device_id)}-{role.value}"


def ownership_labels(
    instance_id: str, device_id: str, role: Role, *, now: datetime | None = None
) -> dict[str, str]:
    created = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_INSTANCE: instance_id,
        LABEL_DEVICE: device_id,
        LABEL_ROLE: role.value,
        LABEL_CREATED_AT: created.isoformat(timespec="seconds"),
    }


def owner_filter(instance_id: str) -> list[str]:
    """The label filter selecting every container of one deployment instance."""
    return [f"{LABEL_MANAGED_BY}={MANAGED_BY}", f"{LABEL_INSTANCE}={instance_id}"]


def parse_created_at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_health(status: str) -> str | None:
    """The health in a container list row's Status ("Up 5 minutes (unhealthy)"): healthy,
    unhealthy, starting, or None when the container has no healthcheck or is not running."""
    for marker, health in (
        ("(healthy)", "healthy"),
        ("(unhealthy)", "unhealthy"),
        ("(health: starting)", "starting"),
    ):
        if status.endswith(marker):
            return health
    return None


@dataclass(frozen=True)
class ContainerInfo:
    """A launched container as the engine reports it right after launch."""

    name: str
    id: str
    device_id: str
    role: Role
    state: str
    host_port: int | None = None  # stream only, when published
    ip: str | None = None  # address on the deployment network
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ManagedContainer:
    """One row of list_managed(): what reconciliation observes."""

    name: str
    id: str
    device_id: str
    role: str
    state: str  # running, exited, created, restarting, paused, dead, removing
    created_at: datetime | None
    labels: dict[str, str] = field(default_factory=dict)
    health: str | None = None  # healthy, unhealthy, starting; None without a healthcheck


@dataclass(frozen=True)
class PairNetwork:
    """One of this instance's per-device pair networks (runtime.isolation), as listed."""

    name: str
    device_id: str
    created_at: datetime | None
    subnet: str | None = None  # its IPv4 subnet and bridge interface: what its egress rules name
    bridge: str | None = None
    guarded: bool | None = None  # its egress rules are all installed; None: not checked (guard off)


@dataclass(frozen=True)
class Inventory:
    """What one reconcile pass sees of the engines: this instance's containers and pair networks,
    and, over several hosts, which hosts did not answer (down: past their grace; late: within it).
    ``where`` maps each listed container id and name, and each network name, to its host (and each
    stray guard's network as `guard <name>`)."""

    containers: list[ManagedContainer]
    networks: list[PairNetwork]
    down: frozenset[str] = frozenset()
    late: frozenset[str] = frozenset()
    where: dict[str, str] = field(default_factory=dict)
    stray_guards: list[str] = field(default_factory=list)  # networks with egress rules but gone


STREAM_USER = "stream"
VNC_PASSWORD_LEN = 8  # VNC authentication uses the first 8 bytes of a password


def vnc_password(secret: str) -> str:
    """The VNC password a device gets from its stream secret (devices.stream_secret)."""
    return secret[:VNC_PASSWORD_LEN]


def stream_auth(secret: str | None) -> dict[str, str]:
    """The header a stream started with `secret` wants on every page and WebSocket (HTTP Basic,
    websockify's BasicHTTPAuth); none for an open stream."""
    if not secret:
        return {}
    token = base64.b64encode(f"{STREAM_USER}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
