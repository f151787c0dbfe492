"""The interface every container runtime implements: one Docker engine (ContainerRuntime, the
hosts table's implicit row) or every host of the hosts table (HostsRuntime). Callers hold a
Runtime and never ask which one it is."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from provisioner.runtime.containers import ContainerRuntime
from provisioner.runtime.model import ContainerInfo, Inventory, ManagedContainer, Role
from provisioner.runtime.placement import Hosts
from provisioner.runtime.profiles import DeviceProfile


class Runtime(Protocol):
    instance_id: str
    network: str
    stream_image: str
    profiles: dict[str, DeviceProfile]
    hosts: Hosts

    def name_for(self, device_id: str, role: Role | str) -> str: ...

    def profile(self, name: str) -> DeviceProfile:
        """UnknownProfile when there is no such profile."""
        ...

    def place(self, db: Session, profile: str, *, only: str | None = None) -> str:
        """The host a new device goes to, chosen inside ``db``'s transaction (the one recording
        it); ``only``: that host if it is active and has room, else NoCapacity."""
        ...

    def check_engine(self, profile: DeviceProfile) -> None:
        """What can be checked before a device is placed: the engine answers, the images are there."""
        ...

    def this_engine_as(self, host: str) -> ContainerRuntime:
        """This process's own engine as ``host``'s runtime (WrongEngine when it is another's)."""
        ...

    def ensure_network(self) -> None: ...

    def launch_device(self, device_id: str, profile: str, *, secret: str | None = None) -> ContainerInfo: ...

    def launch_stream(self, device_id: str, *, secret: str | None = None) -> ContainerInfo: ...

    def heal_stream(self, device_id: str, *, secret: str | None = None) -> ContainerInfo: ...

    def wait_device_ready(
        self, device_id: str, profile: str, timeout_s: float | None = None
    ) -> ContainerInfo: ...

    def wait_stream_ready(
        self, device_id: str, timeout_s: float | None = None, *, secret: str | None = None
    ) -> ContainerInfo: ...

    def stream_url(self, info: ContainerInfo) -> str: ...

    def stream_route(self, info: ContainerInfo) -> str | None: ...

    def remove_device(self, device_id: str) -> list[str]: ...

    def remove(self, name_or_id: str) -> bool: ...

    def remove_pair_network(self, device_id: str) -> bool: ...

    def guard_pair_network(self, device_id: str) -> bool:
        """(Re)install the egress rules of the device's pair network (runtime.egress); False when
        the network is gone."""
        ...

    def remove_guard(self, network: str) -> bool:
        """Remove the egress rules of a pair network that is gone; False when it exists again."""
        ...

    def inventory(self) -> Inventory: ...

    def list_managed(self) -> list[ManagedContainer]: ...
