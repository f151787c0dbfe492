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

Each pair network takes a subnet from the engine's default address pool first: it is the
engine's to size (`default-address-pools` in daemon.json) and its firewall rules go with it. A
stock engine's pool holds only about 30 networks, so when the engine says it is exhausted the
network gets an explicit /28 out of PAIR_POOL instead (the block chosen from the device id, the
next one tried when the engine reports an overlap). Nothing may leak either way: a pair network
is removed with the last container of its device (ContainerRuntime.remove), and leftovers (a
crash between creating the network and the container) carry the ownership labels, are found by
pair_networks and removed by reconciliation (a REMOVE_NETWORK action, reconciler.plan) or by
ContainerRuntime.remove_orphan_networks.

What a device reaches through its pair network's NAT is narrowed by the egress guard
(runtime.egress): rules installed with the network, before any container joins it, and removed
with it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import threading
import zlib
from datetime import datetime
from typing import Any

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from provisioner.runtime.egress import install_guard, network_guard, remove_guards
from provisioner.runtime.errors import ContainerMissing, EngineError, NameConflict, translate_docker_errors
from provisioner.runtime.model import (
    LABEL_DEVICE,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    MANAGED_BY,
    PairNetwork,
)

log = logging.getLogger(__name__)

PAIR_ROLE = "pair-network"
PAIR_POOL = ipaddress.ip_network("10.220.0.0/16")
PAIR_PREFIX = 28  # 14 addresses (a device, its stream, room to spare); 4096 blocks in the pool
_PAIR_TRIES = 64
_PAIR_LOCK = threading.Lock()  # the device and its stream are launched concurrently


def pair_network_name(instance_id: str, device_id: str) -> str:
    return f"prov-{instance_id}-{device_id}-net"


def _pair_subnets(device_id: str) -> list[str]:
    blocks = list(PAIR_POOL.subnets(new_prefix=PAIR_PREFIX))
    start = zlib.crc32(device_id.encode()) % len(blocks)
    return [str(blocks[(start + i) % len(blocks)]) for i in range(_PAIR_TRIES)]


class _NoSubnet(Exception):
    """The engine has no free subnet in its default pool, or the one asked for overlaps."""


def _create(client: docker.DockerClient, name: str, labels: dict[str, str], subnet: str | None) -> None:
    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]) if subnet else None
    # A concurrent creator in another process may win: a name conflict means it exists now.
    with contextlib.suppress(NameConflict), translate_docker_errors(container=name):
        try:
            client.api.create_network(name, driver="bridge", check_duplicate=True, ipam=ipam, labels=labels)
        except docker.errors.APIError as exc:  # an exhausted pool is a 404, an overlap a 403
            if "overlap" in str(exc.explanation or ""):
                raise _NoSubnet(str(exc.explanation)) from exc
            raise


def _named(client: docker.DockerClient, name: str) -> list[dict[str, Any]]:
    with translate_docker_errors():
        return [n for n in client.api.networks(names=[name]) if n["Name"] == name]


def ensure_pair_network(
    client: docker.DockerClient, instance_id: str, device_id: str, *, guard: bool = True
) -> str:
    """Create the device's pair network unless it exists, with its egress rules when ``guard``
    (a network whose rules cannot be installed is removed again); returns its name."""
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
        for subnet in [None, *_pair_subnets(device_id)]:  # the engine's default pool, then ours
            try:
                _create(client, name, labels, subnet)
            except _NoSubnet:
                continue
            if guard:
                _guard_new(client, instance_id, name)
            return name
        raise EngineError(
            f"no free /{PAIR_PREFIX} for {name} in {PAIR_POOL} after {_PAIR_TRIES} tries",
            status_code=None,
            container=name,
        )


def _guard_new(client: docker.DockerClient, instance_id: str, name: str) -> None:
    try:
        guard_pair_network(client, instance_id, name)
    except Exception:
        with contextlib.suppress(EngineError, ContainerMissing), translate_docker_errors():
            client.api.remove_network(name)
        raise


def guard_pair_network(client: docker.DockerClient, instance_id: str, name: str) -> bool:
    """(Re)install a pair network's egress rules; False when the network does not exist.
    EngineError naming PROVISIONER_DOCKER__EGRESS_GUARD when they cannot be installed."""
    networks = _named(client, name)
    if not networks:
        return False
    found = network_guard(networks[0])
    if found is None:
        raise EngineError(f"pair network {name} has no IPv4 subnet to guard", status_code=None)
    try:
        install_guard(client, instance_id, name, bridge=found[1])  # the rules name the bridge only
    except EngineError as exc:
        raise EngineError(
            f"cannot install the egress rules of {name} ({exc}); on an engine whose firewall you "
            "manage yourself set PROVISIONER_DOCKER__EGRESS_GUARD=false (docs/security.md)",
            status_code=exc.status_code,
            container=name,
        ) from exc
    return True


def remove_pair_network(
    client: docker.DockerClient, instance_id: str, device_id: str, *, guard: bool = True
) -> bool:
    """Remove the device's pair network, then its egress rules; False when it is gone or a
    container still uses it (its rules stay)."""
    name = pair_network_name(instance_id, device_id)
    removed = False
    for network in _named(client, name):
        with contextlib.suppress(EngineError, ContainerMissing), translate_docker_errors():
            client.api.remove_network(network["Id"])  # 403/409 while an endpoint is attached
            removed = True
    if removed and guard:
        try:
            remove_guards(client, instance_id, [name])
        except EngineError as exc:  # reconciliation removes rules whose network is gone
            log.warning("egress rules of %s left in place: %s", name, exc)
    return removed


def list_pair_networks(client: docker.DockerClient, instance_id: str) -> dict[str, str]:
    """This instance's pair networks by label: {network name: device id}."""
    return {n.name: n.device_id for n in pair_networks(client, instance_id)}


def pair_networks(client: docker.DockerClient, instance_id: str) -> list[PairNetwork]:
    """This instance's pair networks, with their devices and creation times: one label-filtered
    network list call."""
    filters = {"label": [f"{LABEL_INSTANCE}={instance_id}", f"{LABEL_ROLE}={PAIR_ROLE}"]}
    with translate_docker_errors():
        rows = client.api.networks(filters=filters)
    networks = []
    for row in rows:
        subnet, bridge = network_guard(row) or (None, None)
        device = (row.get("Labels") or {}).get(LABEL_DEVICE, "")
        networks.append(PairNetwork(row["Name"], device, _created(row.get("Created")), subnet, bridge))
    return networks


def _created(value: str | None) -> datetime | None:
    """A network's Created ("2026-01-01T10:00:00.123456789Z", nanoseconds) as a datetime."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00"))
    except ValueError:
        return None
