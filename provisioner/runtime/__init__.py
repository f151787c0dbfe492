"""Container runtime: device and stream containers on a Docker host, owned by labels.

Plain typed Python (never imports prefect). Public API: ContainerRuntime, the error tree in
runtime.errors with is_retryable(), DeviceProfile/load_profiles, ContainerInfo/ManagedContainer.
"""

from provisioner.runtime.containers import ContainerRuntime
from provisioner.runtime.errors import (
    ContainerExited,
    ContainerMissing,
    EngineError,
    EngineRefused,
    EngineUnreachable,
    ImageMissing,
    NameConflict,
    NotOwned,
    NotReady,
    RuntimeFailure,
    UnknownProfile,
    is_retryable,
)
from provisioner.runtime.model import ContainerInfo, ManagedContainer, Role
from provisioner.runtime.profiles import DeviceProfile, Readiness, load_profiles

__all__ = [
    "ContainerExited",
    "ContainerInfo",
    "ContainerMissing",
    "ContainerRuntime",
    "DeviceProfile",
    "EngineError",
    "EngineRefused",
    "EngineUnreachable",
    "ImageMissing",
    "ManagedContainer",
    "NameConflict",
    "NotOwned",
    "NotReady",
    "Readiness",
    "Role",
    "RuntimeFailure",
    "UnknownProfile",
    "is_retryable",
    "load_profiles",
]
