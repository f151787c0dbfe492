"""Isolation against the real engine: a device is reachable only from its own stream. Each test
has a runtime of its own instance: removing orphaned pair networks touches no other test's."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from provisioner.runtime import ContainerRuntime, Role
from provisioner.runtime.isolation import list_pair_networks, pair_network_name
from tests.plugins.docker_engine import RuntimeFactory, new_session_id_for_tests

pytestmark = pytest.mark.docker


@pytest.fixture
def runtime(runtime_factory: RuntimeFactory) -> Iterator[ContainerRuntime]:
    """A runtime of a new instance; its containers and pair networks are removed afterwards."""
    own = runtime_factory()
    yield own
    for container in own.list_managed():
        own.remove(container.id)
    own.remove_orphan_networks()


def _open(client: docker.DockerClient, container: str, host: str, port: int) -> tuple[int, str]:
    """From inside `container`, open host:port and read up to 12 bytes (an RFB banner); 3 s at most."""
    script = f"exec 3<>/dev/tcp/{host}/{port} && head -c 12 <&3"
    result = client.api.exec_create(container, ["timeout", "3", "bash", "-c", script], stderr=False)
    output = client.api.exec_start(result["Id"]).decode("utf-8", errors="replace")
    return client.api.exec_inspect(result["Id"])["ExitCode"], output


def test_device_cannot_open_another_devices_vnc_port_while_its_stream_reaches_it(
    runtime: ContainerRuntime, docker_client: docker.DockerClient
) -> None:
    a, b = new_session_id_for_tests(), new_session_id_for_tests()
    for device_id in (a, b):
        runtime.launch_device(device_id, "stub")
        runtime.launch_stream(device_id)
    device_a = runtime.wait_device_ready(a, "stub", timeout_s=20)  # probed from inside its stream
    device_b = runtime.wait_device_ready(b, "stub", timeout_s=20)
    stream_b = runtime.wait_stream_ready(b, timeout_s=20)

    # Each stream reaches its own device's VNC port by name: both VNC servers are listening.
    for device_id, device in ((a, device_a), (b, device_b)):
        code, banner = _open(docker_client, runtime.name_for(device_id, Role.STREAM), device.name, 5900)
        assert (code, banner[:8]) == (0, "RFB 003.")

    # Device a reaches neither device b's VNC port nor b's stream nor b's container name.
    assert device_a.ip and device_b.ip and stream_b.ip
    code, banner = _open(docker_client, device_a.id, device_b.ip, 5900)
    assert code != 0 and banner == ""
    code, banner = _open(docker_client, device_a.id, stream_b.ip, 6080)
    assert code != 0 and banner == ""
    code, banner = _open(docker_client, device_a.id, device_b.name, 5900)
    assert code != 0 and banner == ""

    # Each device is on its own pair network only; its stream is on that one and the deployment's.
    for device_id in (a, b):
        pair = pair_network_name(runtime.instance_id, device_id)
        nets = docker_client.api.inspect_container(runtime.name_for(device_id, Role.DEVICE))
        assert set(nets["NetworkSettings"]["Networks"]) == {pair}
        nets = docker_client.api.inspect_container(runtime.name_for(device_id, Role.STREAM))
        assert set(nets["NetworkSettings"]["Networks"]) == {pair, runtime.network}


def test_pair_network_goes_with_the_devices_last_container(
    runtime: ContainerRuntime, docker_client: docker.DockerClient, session_id: str
) -> None:
    pair = pair_network_name(runtime.instance_id, session_id)
    runtime.launch_device(session_id, "stub")
    runtime.launch_stream(session_id)
    assert list_pair_networks(docker_client, runtime.instance_id)[pair] == session_id

    runtime.remove(runtime.name_for(session_id, Role.STREAM))  # the device still uses it
    assert pair in list_pair_networks(docker_client, runtime.instance_id)
    runtime.remove(runtime.name_for(session_id, Role.DEVICE))
    assert pair not in list_pair_networks(docker_client, runtime.instance_id)


def test_orphan_pair_network_is_found_by_label_and_removed(
    runtime: ContainerRuntime, docker_client: docker.DockerClient, session_id: str
) -> None:
    from provisioner.runtime.isolation import ensure_pair_network

    pair = ensure_pair_network(docker_client, runtime.instance_id, session_id)  # a crash before the container
    kept = new_session_id_for_tests()
    runtime.launch_device(kept, "stub")
    kept_pair = pair_network_name(runtime.instance_id, kept)

    assert pair in runtime.remove_orphan_networks()
    names = list_pair_networks(docker_client, runtime.instance_id)
    assert pair not in names and kept_pair in names
    runtime.remove_device(kept)
