"""The egress guard against the real engine (runtime.egress): from inside a device, a listener on
the host's bridge address and a neighbour's published stream are unreachable while its own stream
answers; the rules read back drop the private and link-local ranges from its bridge and nothing
else, and go with the network; rules left by a removed network do not cut a later one on its
subnet. Traffic goes only to listeners on this machine."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import docker
import pytest

from provisioner.runtime import ContainerRuntime, Role, egress
from provisioner.runtime.egress import (
    GUARD_IMAGE,
    GUARD_ROLE,
    _inserts,
    guard_rules,
    guard_tag,
    listed_guards,
    netguard,
    private_resolvers,
)
from provisioner.runtime.isolation import PAIR_ROLE, pair_network_name
from provisioner.runtime.model import LABEL_DEVICE, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY
from tests.plugins.docker_engine import RuntimeFactory, new_session_id_for_tests
from tests.support import wait_for

pytestmark = pytest.mark.docker


def _connects(client: docker.DockerClient, container: str, host: str, port: int) -> bool:
    """From inside `container`, whether a TCP connection to host:port opens within 3 s."""
    script = f"exec 3<>/dev/tcp/{host}/{port}"
    result = client.api.exec_create(container, ["timeout", "3", "bash", "-c", script])
    client.api.exec_start(result["Id"])
    return client.api.exec_inspect(result["Id"])["ExitCode"] == 0


@contextlib.contextmanager
def _listener(address: str) -> Iterator[int]:
    """A TCP listener on `address` (an address of this machine) accepting until the end; its port."""
    server = socket.create_server((address, 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                server.accept()[0].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()


def _gateway(client: docker.DockerClient, network: str) -> str:
    """The network's gateway: the host's address on its bridge (the subnet's first address when
    the subnet was given without one)."""
    config = client.api.inspect_network(network)["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def _subnet(client: docker.DockerClient, network: str) -> str:
    return client.api.inspect_network(network)["IPAM"]["Config"][0]["Subnet"]


def _address_on(client: docker.DockerClient, container: str, network: str) -> str:
    return client.api.inspect_container(container)["NetworkSettings"]["Networks"][network]["IPAddress"]


def _boot(runtime: ContainerRuntime) -> str:
    device_id = new_session_id_for_tests()
    runtime.launch_device(device_id, "stub")
    runtime.launch_stream(device_id)
    runtime.wait_device_ready(device_id, "stub", timeout_s=30)
    runtime.wait_stream_ready(device_id, timeout_s=30)
    return device_id


@pytest.fixture
def published_on_bridge(runtime_factory: RuntimeFactory, runtime: ContainerRuntime) -> RuntimeFactory:
    """Runtimes publishing streams on the deployment network's gateway: an address of this
    machine's (a bridge), as a LAN address would be on a Docker host."""
    runtime.ensure_network()
    address = _gateway(runtime.client, runtime.network)
    return lambda **options: runtime_factory(publish_host=address, **options)


def test_a_device_reaches_its_stream_but_not_the_host_nor_a_neighbours_stream(
    published_on_bridge: RuntimeFactory, docker_client: docker.DockerClient
) -> None:
    guarded = published_on_bridge()
    open_ = published_on_bridge(egress_guard=False)  # the same world without the rules: the control
    a, b, c = _boot(guarded), _boot(guarded), _boot(open_)
    stream_b = guarded.wait_stream_ready(b, timeout_s=5)
    assert stream_b.host_port
    bridge = guarded.publish_host

    def reach(rt: ContainerRuntime, device_id: str) -> dict[str, bool]:
        pair = pair_network_name(rt.instance_id, device_id)
        device, stream = rt.name_for(device_id, Role.DEVICE), rt.name_for(device_id, Role.STREAM)
        with _listener(_gateway(docker_client, pair)) as port:
            on_gateway = _connects(docker_client, device, _gateway(docker_client, pair), port)
        return {
            "host's bridge address": on_gateway,
            "neighbour's published stream": _connects(docker_client, device, bridge, stream_b.host_port),
            "its own stream": _connects(
                docker_client, device, _address_on(docker_client, stream, pair), 6080
            ),
        }

    # Without the rules both paths are open (what the guard is for).
    assert reach(open_, c) == {
        "host's bridge address": True,
        "neighbour's published stream": True,
        "its own stream": True,
    }
    assert reach(guarded, a) == {
        "host's bridge address": False,
        "neighbour's published stream": False,
        "its own stream": True,
    }


def test_the_rules_drop_private_and_link_local_ranges_only_and_go_with_the_network(
    runtime: ContainerRuntime, docker_client: docker.DockerClient
) -> None:
    device_id = new_session_id_for_tests()
    runtime.launch_device(device_id, "stub")
    pair = pair_network_name(runtime.instance_id, device_id)
    bridge = f"br-{docker_client.api.inspect_network(pair)['Id'][:12]}"

    tag = guard_tag(runtime.instance_id, pair)
    rules = listed_guards(docker_client, runtime.instance_id)[pair]
    # DNS to the engine host's nameservers in a blocked range (this machine's resolv.conf: the
    # engine is local) is let through ahead of the drops, for port 53 only.
    with open("/etc/resolv.conf") as conf:
        nameservers = [line.split()[1] for line in conf if line.startswith("nameserver")]
    dns = {
        f"-A DOCKER-USER -d {ns}/32 -i {bridge} -p {proto} -m {proto} --dport 53 "
        f"-m comment --comment {tag} -j RETURN"
        for ns in private_resolvers(nameservers)
        for proto in ("udp", "tcp")
    }
    # Apart from those, only drops, each of what enters by the bridge towards one blocked range.
    assert rules == dns | {
        *(
            f"-A DOCKER-USER -d {blocked} -i {bridge} ! -o {bridge} "
            f"-m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment {tag} -j DROP"
            for blocked in (
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "169.254.0.0/16",
            )
        ),
        f"-A INPUT -i {bridge} -m conntrack --ctstate NEW -m comment --comment {tag} -j DROP",
    }

    runtime.remove_device(device_id)
    assert pair not in listed_guards(docker_client, runtime.instance_id)


@pytest.mark.alone  # with a 1 s age it could remove another session's netguard container mid-run
def test_a_netguard_container_left_by_a_killed_caller_is_removed_by_a_later_run(
    docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller killed between creating its netguard container and removing it leaves one that
    no instance owns. A later netguard run removes it once it is STALE_GUARD_S old; younger, it may
    be another caller's mid-run, and it is kept."""
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_ROLE: GUARD_ROLE}
    left = docker_client.api.create_container(GUARD_IMAGE, command=["list"], labels=labels)["Id"]

    def exists() -> bool:
        return bool(docker_client.api.containers(all=True, filters={"id": left}))

    try:
        created = docker_client.api.inspect_container(left)["Created"]
        netguard(docker_client, "list")
        assert exists(), "a young netguard container was removed"
        monkeypatch.setattr(egress, "STALE_GUARD_S", 1.0)
        listed = docker_client.api.containers(all=True, filters={"id": left})[0]["Created"]
        wait_for(lambda: time.time() - listed > 1.5, timeout=10)
        netguard(docker_client, "list")
        assert not exists(), f"the netguard container left at {created} is still there"
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_container(left, force=True)


@pytest.mark.alone  # another session's guard install would prune the stray rules it looks for
def test_a_deleted_rule_shows_as_unguarded_and_removal_of_stray_rules(
    runtime_factory: RuntimeFactory, docker_client: docker.DockerClient
) -> None:
    runtime = runtime_factory()  # its own instance: remove_orphan_networks sees only this test's
    device_id = new_session_id_for_tests()
    runtime.launch_device(device_id, "stub")
    pair = pair_network_name(runtime.instance_id, device_id)
    assert {n.name: n.guarded for n in runtime.inventory().networks}[pair] is True

    tag = guard_tag(runtime.instance_id, pair)
    installed = sorted(listed_guards(docker_client, runtime.instance_id)[pair])
    kept = [r.replace("-A ", "-I ", 1) for r in installed if "169.254.0.0/16" not in r]
    netguard(docker_client, "replace", tag, *kept)  # someone deleted the metadata rule
    assert {n.name: n.guarded for n in runtime.inventory().networks}[pair] is False

    assert runtime.guard_pair_network(device_id)
    assert {n.name: n.guarded for n in runtime.inventory().networks}[pair] is True

    gone = new_session_id_for_tests()  # a network removed behind our back leaves its rules
    runtime.launch_device(gone, "stub")
    docker_client.api.remove_container(runtime.name_for(gone, Role.DEVICE), force=True)
    docker_client.api.remove_network(pair_network_name(runtime.instance_id, gone))
    assert runtime.inventory().stray_guards == [pair_network_name(runtime.instance_id, gone)]
    assert runtime.remove_orphan_networks() == []
    assert runtime.inventory().stray_guards == []
    assert pair in listed_guards(docker_client, runtime.instance_id)


@pytest.mark.alone  # another session's guard install would prune the stale rules it puts back
def test_rules_left_by_a_removed_network_are_pruned_and_never_cut_a_network_on_its_subnet(
    runtime_factory: RuntimeFactory, docker_client: docker.DockerClient
) -> None:
    """Docker hands a freed subnet to a later network (its default pools wrap after some 30
    networks). Rules of a network removed behind our back (a killed worker, an instance never
    reconciled again) go when the next network is guarded, whichever instance installed them; and
    until then they must not drop the new network's own traffic, its stream reaching its device."""
    runtime = runtime_factory()
    other = runtime_factory()  # another instance on the same engine: its dead rules go as well
    gone = new_session_id_for_tests()
    other.launch_device(gone, "stub")
    gone_pair = pair_network_name(other.instance_id, gone)
    subnet = _subnet(docker_client, gone_pair)
    stale = sorted(listed_guards(docker_client, other.instance_id)[gone_pair])
    docker_client.api.remove_container(other.name_for(gone, Role.DEVICE), force=True)
    docker_client.api.remove_network(gone_pair)
    assert gone_pair in listed_guards(docker_client, other.instance_id)

    device_id = new_session_id_for_tests()
    docker_client.api.create_network(
        pair_network_name(runtime.instance_id, device_id),
        driver="bridge",
        ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)]),
        labels={  # as ensure_pair_network labels it, on the freed subnet
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_INSTANCE: runtime.instance_id,
            LABEL_DEVICE: device_id,
            LABEL_ROLE: PAIR_ROLE,
        },
    )
    assert runtime.guard_pair_network(device_id)
    assert gone_pair not in listed_guards(docker_client, other.instance_id)  # pruned

    # Rules of a removed network not pruned yet (put back as they were) leave the new pair alone.
    netguard(docker_client, "replace", guard_tag(other.instance_id, gone_pair), *_inserts(stale))
    assert set(listed_guards(docker_client, other.instance_id)[gone_pair]) == set(stale)
    runtime.launch_device(device_id, "stub")
    runtime.launch_stream(device_id)
    runtime.wait_device_ready(device_id, "stub", timeout_s=30)  # the stream reads the device's banner
    runtime.wait_stream_ready(device_id, timeout_s=30)
    netguard(docker_client, "remove", guard_tag(other.instance_id, gone_pair))


def test_installs_at_once_prune_the_same_stale_rules_and_all_succeed(
    runtime_factory: RuntimeFactory, docker_client: docker.DockerClient
) -> None:
    """Several processes guard networks at the same time (flow runs, the executor, other instances
    on the engine), and each prunes the same stale rules first: a rule another one deleted in the
    meantime is gone as wanted, not a failure of the install."""
    instance_id = runtime_factory().instance_id
    tag = guard_tag(instance_id, "gone")
    stale = [
        f"-I DOCKER-USER -i br-{secrets.token_hex(6)} -m comment --comment {tag} -j DROP" for _ in range(30)
    ]
    netguard(docker_client, "replace", tag, *stale)  # bridges that do not exist: stale at once
    errors: list[Exception] = []

    def install(n: int) -> None:
        try:
            netguard(docker_client, "replace", guard_tag(instance_id, f"net{n}"))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=install, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert "gone" not in listed_guards(docker_client, instance_id)


def test_only_blocked_ipv4_nameservers_get_a_dns_exemption_ahead_of_the_drops() -> None:
    listed = ["127.0.0.53", "10.255.255.53", "8.8.8.8", "fe80::1", "192.168.1.1", "10.255.255.53", "x"]
    assert private_resolvers(listed) == ("10.255.255.53", "192.168.1.1")
    rules = guard_rules("provisioner:t:n", "br-0123456789ab", ("10.0.0.2",))
    assert [rule.rsplit(" -j ", 1)[1] for rule in rules] == ["RETURN"] * 2 + ["DROP"] * 6
    assert rules[0].startswith("-A DOCKER-USER -d 10.0.0.2/32 -i br-0123456789ab -p udp -m udp --dport 53 ")
    # Inserted at the top of their chains in this order: the exemptions before the drops.
    assert [rule.split(" ", 3)[:3] for rule in _inserts(rules)][:3] == [
        ["-I", "DOCKER-USER", "1"],
        ["-I", "DOCKER-USER", "2"],
        ["-I", "DOCKER-USER", "3"],
    ]
