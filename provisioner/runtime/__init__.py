"""Container runtime: device and stream containers on the Docker hosts, owned by labels.

Plain typed Python (never imports prefect). Public API: the Runtime interface (runtime.base) and
build_runtime, which picks ContainerRuntime (one engine) or HostsRuntime (the hosts table); Hosts
(where devices go); the error tree in runtime.errors with is_retryable(); DeviceProfile and
load_profiles; ContainerInfo and ManagedContainer.
"""

from provisioner.runtime.base import Runtime
from provisioner.runtime.build import build_runtime
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
from provisioner.runtime.placement import Hosts, load_hosts
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
    "Hosts",
    "ImageMissing",
    "ManagedContainer",
    "NameConflict",
    "NotOwned",
    "NotReady",
    "Readiness",
    "Role",
    "Runtime",
    "RuntimeFailure",
    "UnknownProfile",
    "build_runtime",
    "is_retryable",
    "load_hosts",
    "load_profiles",
]
