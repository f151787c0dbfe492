"""The egress guard: from its pair network (runtime.isolation) a device reaches the public
internet (its apps must register) and its own stream, nothing on our side of the host.

Per pair network with bridge B, rules tagged with the comment `provisioner:<instance>:<network>`:

    DOCKER-USER (forwarded traffic; Docker jumps here before its own rules), for each R in
    10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16:
      -d R -i B ! -o B -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP
    INPUT (the host's own addresses: gateway IPs, docker0, its LAN address)
      -i B -m conntrack --ctstate NEW -j DROP

The rules name the bridge, never the subnet: Docker hands a freed subnet to a later network, and a
rule left by a network removed behind our back (a killed worker; reconciliation removes it later)
would otherwise drop the new network's own traffic, its stream reaching its device. A bridge's
name is its network's id, never reused; matching what enters by it also covers a spoofed source.
Installing rules first prunes tagged rules naming a bridge the host no longer has (netguard.sh).

Docker's embedded DNS forwards a device's queries to the engine host's nameservers from the device's
own network namespace, so a nameserver inside a blocked range (a VPC or LAN resolver) is let
through for DNS only, ahead of the drops, for each such nameserver NS of the host's resolv.conf:
      -d NS/32 -i B -p udp|tcp --dport 53 -j RETURN
(RETURN ends DOCKER-USER for those packets only; Docker's own rules still apply to them). A
nameserver on the host itself is not reached (INPUT): see docs/security.md.

The private ranges hold every other Docker network (other pair networks, the deployment network
and its gateway) and the LAN with other hosts' stream ports; 169.254/16 holds the cloud metadata
address. `! -o B` keeps the device and its stream talking (bridged traffic leaves by its own
bridge), the state match keeps replies to what reached the device. Apart from the DNS exemptions
only DROP rules: nothing of Docker's or the operator's later in the chains is skipped, and other
destinations (the public internet) are left to them.

The engine may be remote and the worker may hold nothing but its socket, so the rules go in
through the engine: a short-lived `provisioner/netguard` container (images/netguard) in the
host's network namespace with NET_ADMIN and NET_RAW only, using the iptables backend (nft or
legacy) whose tables hold dockerd's DOCKER-USER chain.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

import docker

from provisioner.runtime.errors import EngineError, translate_docker_errors
from provisioner.runtime.model import LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY

GUARD_IMAGE = "provisioner/netguard:latest"
GUARD_ROLE = "netguard"
BLOCKED = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
GUARD_TIMEOUT_S = 30.0
# A netguard container this old was left by a caller killed mid-run (a run takes <= GUARD_TIMEOUT_S).
STALE_GUARD_S = 300.0
_TAG_PREFIX = "provisioner:"
_SAFE = re.compile(r"^[A-Za-z0-9_.:/,!-]+$")  # a rule is word-split inside the container


def guard_tag(instance_id: str, network: str) -> str:
    return f"{_TAG_PREFIX}{instance_id}:{network}"


def guard_rules(tag: str, bridge: str, resolvers: Iterable[str] = ()) -> list[str]:
    """The rules of the network on ``bridge`` as `iptables -S` prints them (`-A CHAIN spec`), in
    chain order; ``resolvers``: the blocked nameservers DNS is let through to (private_resolvers)."""
    comment = f"-m comment --comment {tag}"
    rules = [
        f"-A DOCKER-USER -d {resolver}/32 -i {bridge} -p {proto} -m {proto} --dport 53 {comment} -j RETURN"
        for resolver in resolvers
        for proto in ("udp", "tcp")
    ]
    rules += [
        f"-A DOCKER-USER -d {blocked} -i {bridge} ! -o {bridge} "
        f"-m conntrack ! --ctstate RELATED,ESTABLISHED {comment} -j DROP"
        for blocked in BLOCKED
    ]
    rules.append(f"-A INPUT -i {bridge} -m conntrack --ctstate NEW {comment} -j DROP")
    for rule in rules:
        if not _SAFE.match(rule.replace(" ", "")):
            raise ValueError(f"unsafe characters in egress rule {rule!r}")
    return rules


def _inserts(rules: list[str]) -> list[str]:
    """`-A CHAIN spec` as `-I CHAIN n spec`: at the top of each chain, in the given order."""
    position: dict[str, int] = {}
    inserts = []
    for rule in rules:
        _, chain, spec = rule.split(" ", 2)
        position[chain] = position.get(chain, 0) + 1
        inserts.append(f"-I {chain} {position[chain]} {spec}")
    return inserts


def network_guard(network: dict[str, Any]) -> tuple[str, str] | None:
    """(IPv4 subnet, bridge interface) of a network as the engine lists it; None without a subnet."""
    subnets = [
        c["Subnet"]
        for c in (network.get("IPAM") or {}).get("Config") or []
        if ":" not in c.get("Subnet", ":")
    ]
    if not subnets:
        return None
    bridge = (network.get("Options") or {}).get(
        "com.docker.network.bridge.name"
    ) or f"br-{network['Id'][:12]}"
    return subnets[0], bridge


def remove_stale_guards(client: docker.DockerClient) -> None:
    """Remove the netguard containers created over STALE_GUARD_S ago: their callers were killed
    before removing them (netguard removes its own)."""
    cutoff = time.time() - STALE_GUARD_S
    with translate_docker_errors():
        rows = client.api.containers(
            all=True, filters={"label": [f"{LABEL_MANAGED_BY}={MANAGED_BY}", f"{LABEL_ROLE}={GUARD_ROLE}"]}
        )
    stale = [row["Id"] for row in rows if row["Created"] < cutoff]
    for cid in stale:
        with contextlib.suppress(docker.errors.APIError):  # another caller is removing it too
            client.api.remove_container(cid, force=True)


def netguard(client: docker.DockerClient, *args: str, image: str = GUARD_IMAGE) -> str:
    """Run the netguard container with ``args``; its stdout. EngineError when it fails. The
    netguard containers that killed callers left behind are removed first."""
    remove_stale_guards(client)
    with translate_docker_errors(image=image):
        container = client.api.create_container(
            image,
            command=list(args),
            labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_ROLE: GUARD_ROLE},
            host_config=client.api.create_host_config(
                network_mode="host", cap_drop=["ALL"], cap_add=["NET_ADMIN", "NET_RAW"]
            ),
        )
    cid = container["Id"]
    try:
        with translate_docker_errors(container=cid):
            client.api.start(cid)
            status = client.api.wait(cid, timeout=GUARD_TIMEOUT_S).get("StatusCode")
            out = client.api.logs(cid, stdout=True, stderr=False).decode("utf-8", "replace")
            if status != 0:
                err = client.api.logs(cid, stdout=False, stderr=True).decode("utf-8", "replace")
                err = "\n".join(line for line in err.splitlines() if not line.startswith("# Warning"))
                raise EngineError(
                    f"netguard {args[0]} exited {status}: {err.strip()[:500]}", status_code=None
                )
            return out
    finally:
        try:
            with translate_docker_errors(container=cid):
                client.api.remove_container(cid, force=True)
        except Exception:  # noqa: BLE001, S110 - a leftover netguard container holds nothing
            pass


def listed_guards(client: docker.DockerClient, instance_id: str) -> dict[str, set[str]]:
    """This instance's installed rules by network name (one netguard run)."""
    prefix = _TAG_PREFIX + instance_id + ":"
    found: dict[str, set[str]] = {}
    for line in netguard(client, "list").splitlines():
        match = re.search(r"--comment (\S+)", line)
        if match and match.group(1).startswith(prefix):
            found.setdefault(match.group(1).removeprefix(prefix), set()).add(line.strip())
    return found


def private_resolvers(nameservers: Iterable[str]) -> tuple[str, ...]:
    """The IPv4 nameservers inside a blocked range (loopback ones are not forwarded to)."""
    blocked = [ipaddress.ip_network(b) for b in BLOCKED]
    found = []
    for entry in nameservers:
        try:
            address = ipaddress.ip_address(entry.strip())
        except ValueError:
            continue
        if address.version == 4 and any(address in net for net in blocked) and entry not in found:
            found.append(str(address))
    return tuple(found)


_resolvers: weakref.WeakKeyDictionary[docker.DockerClient, tuple[str, ...]] = weakref.WeakKeyDictionary()
_resolvers_lock = threading.Lock()


def engine_resolvers(client: docker.DockerClient) -> tuple[str, ...]:
    """The engine host's blocked nameservers (one netguard run per client, then remembered)."""
    with _resolvers_lock:
        if client in _resolvers:
            return _resolvers[client]
    found = private_resolvers(netguard(client, "resolvers").split())
    with _resolvers_lock:
        _resolvers[client] = found
    return found


def install_guard(client: docker.DockerClient, instance_id: str, network: str, bridge: str) -> None:
    """Replace the network's rules with the full set (idempotent; one netguard run, and one more
    the first time an engine's nameservers are read)."""
    tag = guard_tag(instance_id, network)
    rules = guard_rules(tag, bridge, engine_resolvers(client))
    netguard(client, "replace", tag, *_inserts(rules))


def remove_guards(client: docker.DockerClient, instance_id: str, networks: Iterable[str]) -> None:
    """Delete every rule of these networks (one netguard run; none when there are none)."""
    tags = [guard_tag(instance_id, n) for n in networks]
    if tags:
        netguard(client, "remove", *tags)
