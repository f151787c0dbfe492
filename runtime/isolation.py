"""Isolation: one small bridge network per device, shared only by the device and its stream.

Why this design: a device runs code we do not control (an Android emulator) and its VNC server
has no password, so no other device may reach it. The device is attached to its own pair network
only; its stream joins that network (to reach the device's VNC port by container name) and the
deployment network (where the gateway and the worker reach the stream). Docker isolates bridge
networks from each other, so device A cannot open device B's VNC port, nor B's stream, nor
anything on the deployment network. The pair network is an ordinary (not `internal`) bridge: an
emulator keeps its outbound internet access through the bridge's NAT. The host reaches bridge
addresses, a worker in a container does not: the device's VNC readiness probe therefore runs
inside its stream (ContainerRuntime._probe_device_vnc).

Docker's default address pool holds only a few dozen networks, so each pair network gets an
explicit /28 out of PAIR_SUBNET_POOL; the block is chosen from the device id and the next one is
tried when the engine reports an overlap. A pair network is removed with the last container of
its device (ContainerRuntime.remove); leftovers (a crash between creating the network and the
container) carry the ownership labels and are found by list_pair_networks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import zlib
from typing import Any

import docker
from docker.types import IPAMConfig, IPAMPool

from runtime.errors import ContainerMissing, EngineError, NameConflict, translate_docker_errors
from runtime.model import LABEL_DEVICE, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY

PAIR_ROLE = "pair-network"
PAIR_SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")
PAIR_PREFIX = 28  # 14 addresses: the device, its stream and room to spare; 4096 networks in the pool
_SUBNET_TRIES = 64
_PAIR_LOCK = threading.Lock()  # the device and its stream are launched concurrently


def pair_network_name(instance_id: str, device_id: str) -> str:
    return f"prov-{instance_id}-{device_id}-net"


def _subnets(device_id: str) -> list[ipaddress.IPv4Network]:
    blocks = list(PAIR_SUBNET_POOL.subnets(new_prefix=PAIR_PREFIX))
    start = zlib.crc32(device_id.encode()) % len(blocks)
    return [blocks[(start + i) % len(blocks)] for i in range(_SUBNET_TRIES)]


def _named(client: docker.DockerClient, name: str) -> list[dict[str, Any]]:
    with translate_docker_errors():
        return [n for n in client.api.networks(names=[name]) if n["Name"] == name]


def ensure_pair_network(client: docker.DockerClient, instance_id: str, device_id: str) -> str:
    """Create the device's pair network unless it exists; returns its name."""
    name = pair_network_name(instance_id, device_id)
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_INSTANCE: instance_id,
        LABEL_DEVICE: device_id,
        LABEL_ROLE: PAIR_ROLE,
    }
    with _PAIR_LOCK:
        if _named(client, name):
            return name
        for subnet in _subnets(device_id):
            ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet))])
            try:
                with translate_docker_errors(container=name):
                    client.api.create_network(
                        name, driver="bridge", check_duplicate=True, ipam=ipam, labels=labels
                    )
                return name
            except NameConflict:
                return name  # another process made it first
            except EngineError as exc:
                if "overlap" not in str(exc):
                    raise
        raise EngineError(
            f"no free /{PAIR_PREFIX} for {name} after {_SUBNET_TRIES} tries in {PAIR_SUBNET_POOL}",
            status_code=None,
            container=name,
        )


def remove_pair_network(client: docker.DockerClient, instance_id: str, device_id: str) -> bool:
    """Remove the device's pair network; False when it is gone or a container still uses it."""
    removed = False
    for network in _named(client, pair_network_name(instance_id, device_id)):
        with contextlib.suppress(EngineError, ContainerMissing), translate_docker_errors():
            client.api.remove_network(network["Id"])  # 403/409 while an endpoint is attached
            removed = True
    return removed


def list_pair_networks(client: docker.DockerClient, instance_id: str) -> dict[str, str]:
    """This instance's pair networks by label: {network name: device id}."""
    filters = {"label": [f"{LABEL_INSTANCE}={instance_id}", f"{LABEL_ROLE}={PAIR_ROLE}"]}
    with translate_docker_errors():
        rows = client.api.networks(filters=filters)
    return {row["Name"]: (row.get("Labels") or {}).get(LABEL_DEVICE, "") for row in rows}
