"""ContainerRuntime against the real engine: launches, labels, readiness, listing, removal."""

from __future__ import annotations

import io
import os
import time
from types import SimpleNamespace

import docker
import pytest

from provisioner.runtime import (
    ContainerExited,
    ContainerRuntime,
    ImageMissing,
    NotOwned,
    NotReady,
    Role,
    is_retryable,
)
from provisioner.runtime.model import (
    LABEL_CREATED_AT,
    LABEL_DEVICE,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    parse_created_at,
)
from provisioner.runtime.probes import fetch_page, read_banner_over_websocket
from provisioner.settings.model import DockerSettings
from tests.plugins.docker_engine import TEST_NETWORK, TEST_PROFILES_FILE

pytestmark = pytest.mark.docker


def _inspect(client: docker.DockerClient, name: str) -> dict:
    return client.api.inspect_container(name)


class TestLaunchAndStream:
    def test_websocket_relays_the_device_rfb_banner(self, runtime: ContainerRuntime, session_id: str) -> None:
        runtime.launch_device(session_id, "stub")
        stream = runtime.launch_stream(session_id)
        runtime.wait_device_ready(session_id, "stub", timeout_s=20)
        ready = runtime.wait_stream_ready(session_id, timeout_s=20)

        assert ready.host_port == stream.host_port
        url = runtime.stream_url(stream)
        assert url == f"http://127.0.0.1:{stream.host_port}/vnc.html?autoconnect=1&path=websockify"
        base = f"127.0.0.1:{stream.host_port}"
        assert read_banner_over_websocket(f"ws://{base}/websockify").startswith("RFB 003.00")
        # Behind the gateway prefix: noVNC's page and the relay answer under /vnc/<session>/ too.
        fetch_page(f"http://{base}/vnc/{session_id}/vnc.html")
        fetch_page(f"http://{base}/vnc/{session_id}/app/ui.js")
        assert read_banner_over_websocket(f"ws://{base}/vnc/{session_id}/websockify").startswith("RFB 003.00")

    def test_labels_names_limits_and_ports(
        self, runtime: ContainerRuntime, docker_client: docker.DockerClient, session_id: str
    ) -> None:
        device = runtime.launch_device(session_id, "stub")
        stream = runtime.launch_stream(session_id)

        assert device.name == f"prov-{runtime.instance_id}-{session_id}-device"
        assert stream.name == f"prov-{runtime.instance_id}-{session_id}-stream"
        for info, role in ((device, Role.DEVICE), (stream, Role.STREAM)):
            attrs = _inspect(docker_client, info.name)
            labels = attrs["Config"]["Labels"]
            assert labels[LABEL_MANAGED_BY] == "provisioner"
            assert labels[LABEL_INSTANCE] == runtime.instance_id
            assert labels[LABEL_DEVICE] == session_id
            assert labels[LABEL_ROLE] == role.value
            created = parse_created_at(labels[LABEL_CREATED_AT])
            assert created is not None and abs(time.time() - created.timestamp()) < 120
            host = attrs["HostConfig"]
            assert host["Privileged"] is False
            assert host["Memory"] > 0 and host["NanoCpus"] > 0
            assert not host["Devices"]
            # The device only on its pair network; its stream there and on the deployment network.
            pair = f"prov-{runtime.instance_id}-{session_id}-net"
            expected = {pair} if role is Role.DEVICE else {pair, runtime.network}
            assert set(attrs["NetworkSettings"]["Networks"]) == expected

        assert not _inspect(docker_client, device.name)["HostConfig"]["PortBindings"]
        assert device.host_port is None
        bindings = _inspect(docker_client, stream.name)["HostConfig"]["PortBindings"]
        assert list(bindings) == ["6080/tcp"]
        assert bindings["6080/tcp"][0]["HostIp"] == "127.0.0.1"
        assert stream.host_port is not None
        # The stream reaches the device by name on their pair network.
        env = dict(e.split("=", 1) for e in _inspect(docker_client, stream.name)["Config"]["Env"])
        assert env["TARGET_HOST"] == device.name

    def test_device_and_stream_are_hardened(
        self, runtime: ContainerRuntime, docker_client: docker.DockerClient, session_id: str
    ) -> None:
        device = runtime.launch_device(session_id, "stub")
        stream = runtime.launch_stream(session_id)
        runtime.wait_device_ready(session_id, "stub", timeout_s=20)
        runtime.wait_stream_ready(session_id, timeout_s=20)  # both work within these limits

        for info in (device, stream):
            attrs = _inspect(docker_client, info.name)
            host = attrs["HostConfig"]
            assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
            assert 0 < host["PidsLimit"] <= 128
            assert host["SecurityOpt"] == ["no-new-privileges"]
            assert host["ReadonlyRootfs"] is True
            assert "/tmp" in host["Tmpfs"]
            assert attrs["Config"]["User"] == "1000:1000"
            # What the kernel applies: a non-root process with no effective capabilities.
            status = runtime._exec(info.id, ["cat", "/proc/1/status"])
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            assert fields["Uid"].split()[0] == "1000"
            assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
            assert fields["NoNewPrivs"].strip() == "1"
            denied = runtime._exec(info.id, ["sh", "-c", "touch /usr/x 2>&1; echo rc=$?"])
            assert "Read-only file system" in denied and "rc=1" in denied

    def test_unpublished_stream_has_no_host_port(self, runtime_factory, session_id: str) -> None:
        rt = runtime_factory(publish_streams=False)
        rt.launch_device(session_id, "stub")
        stream = rt.launch_stream(session_id)
        assert stream.host_port is None
        assert rt.wait_stream_ready(session_id, timeout_s=20).ip  # probed over the network instead
        with pytest.raises(ValueError, match="no published port"):
            rt.stream_url(stream)


class TestIdempotentLaunch:
    def test_running_container_is_returned_not_duplicated(
        self, runtime: ContainerRuntime, session_id: str
    ) -> None:
        first = runtime.launch_device(session_id, "stub")
        again = runtime.launch_device(session_id, "stub")
        assert again.id == first.id
        stream = runtime.launch_stream(session_id)
        assert runtime.heal_stream(session_id).id == stream.id
        sessions = [c for c in runtime.list_managed() if c.device_id == session_id]
        assert sorted(c.role for c in sessions) == ["device", "stream"]

    def test_stopped_stream_is_replaced(
        self, runtime: ContainerRuntime, docker_client: docker.DockerClient, session_id: str
    ) -> None:
        runtime.launch_device(session_id, "stub")
        stream = runtime.launch_stream(session_id)
        docker_client.api.kill(stream.id)
        healed = runtime.heal_stream(session_id)
        assert healed.id != stream.id and healed.state == "running"
        assert runtime.wait_stream_ready(session_id, timeout_s=20).id == healed.id


class TestRemove:
    def test_remove_leaves_no_container_and_no_volume(
        self, runtime: ContainerRuntime, docker_client: docker.DockerClient, session_id: str
    ) -> None:
        docker_client.images.build(
            fileobj=io.BytesIO(b"FROM provisioner/device-stub:latest\nVOLUME /home/device/data\n"),
            tag="provisioner-test/device-stub-volume:latest",
            rm=True,
        )
        device = runtime.launch_device(session_id, "stub-volume")
        volumes = [m["Name"] for m in _inspect(docker_client, device.id)["Mounts"] if m["Type"] == "volume"]
        assert volumes, "the test image declares an anonymous volume"

        assert runtime.remove(device.name) is True
        assert runtime.remove(device.name) is False  # already gone counts as done
        assert not docker_client.api.containers(all=True, filters={"id": device.id})
        existing = {v["Name"] for v in docker_client.api.volumes()["Volumes"] or []}
        assert not set(volumes) & existing

    def test_remove_device_removes_both(self, runtime: ContainerRuntime, session_id: str) -> None:
        device = runtime.launch_device(session_id, "stub")
        stream = runtime.launch_stream(session_id)
        assert runtime.remove_device(session_id) == [stream.name, device.name]
        assert runtime.remove_device(session_id) == []
        assert not [c for c in runtime.list_managed() if c.device_id == session_id]


class TestReadiness:
    def test_device_exiting_at_once_reports_its_logs(
        self, runtime: ContainerRuntime, session_id: str
    ) -> None:
        runtime.launch_device(session_id, "stub-exits")
        with pytest.raises(ContainerExited) as caught:
            runtime.wait_device_ready(session_id, "stub-exits", timeout_s=15)
        assert caught.value.exit_code == 3
        assert "emulator failed to start" in caught.value.logs
        assert "emulator failed to start" in str(caught.value)
        assert not is_retryable(caught.value)
        # A retried launch replaces the exited container instead of returning it.
        relaunched = runtime.launch_device(session_id, "stub-exits")
        assert relaunched.name == caught.value.container

    def test_status_file_readiness_waits_for_ready_then_rfb(
        self, runtime: ContainerRuntime, session_id: str
    ) -> None:
        runtime.launch_device(session_id, "android-fake")
        started = time.monotonic()
        info = runtime.wait_device_ready(session_id, "android-fake", timeout_s=20)
        assert time.monotonic() - started >= 1.0  # the fake reports BOOTING for 2 s after start
        assert runtime._exec(info.id, ["cat", "/tmp/device_status"]) == "READY"

    def test_not_ready_by_deadline_carries_reason_and_logs(
        self, runtime: ContainerRuntime, session_id: str
    ) -> None:
        runtime.launch_device(session_id, "android-slow")
        with pytest.raises(NotReady) as caught:
            runtime.wait_device_ready(session_id, "android-slow", timeout_s=2)
        assert "BOOTING" in caught.value.reason
        assert f"session {session_id}" in caught.value.logs
        assert caught.value.deadline_s == 2

    @pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="host has no /dev/kvm")
    def test_kvm_is_passed_only_when_the_profile_asks(
        self, runtime_factory, docker_client: docker.DockerClient, session_id: str
    ) -> None:
        from provisioner.runtime.profiles import load_profiles

        profiles = load_profiles(TEST_PROFILES_FILE)
        profiles["stub-kvm"] = profiles["stub"].model_copy(
            update={"name": "stub-kvm", "devices": ["/dev/kvm"]}
        )
        rt = runtime_factory(profiles=profiles)
        device = rt.launch_device(session_id, "stub-kvm")
        host = _inspect(docker_client, device.id)["HostConfig"]
        assert [d["PathOnHost"] for d in host["Devices"]] == ["/dev/kvm"]
        assert host["Privileged"] is False

    def test_missing_image_says_how_to_build(self, runtime: ContainerRuntime, session_id: str) -> None:
        with pytest.raises(ImageMissing, match="scripts/build-images"):
            runtime.launch_device(session_id, "missing-image")
        assert not [c for c in runtime.list_managed() if c.device_id == session_id]


class TestOwnership:
    def test_instances_never_see_each_others_containers(self, runtime_factory, session_id: str) -> None:
        first, second = runtime_factory(), runtime_factory()
        mine = first.launch_device(session_id, "stub")
        theirs = second.launch_device(session_id, "stub")  # same session id, other deployment
        assert mine.name != theirs.name
        assert [c.id for c in first.list_managed()] == [mine.id]
        assert [c.id for c in second.list_managed()] == [theirs.id]
        with pytest.raises(NotOwned):
            first.remove(theirs.name)
        assert [c.id for c in second.list_managed()] == [theirs.id]

    def test_foreign_container_with_our_name_is_left_alone(
        self, runtime: ContainerRuntime, docker_client: docker.DockerClient, session_id: str
    ) -> None:
        name = runtime.name_for(session_id, Role.DEVICE)
        foreign = docker_client.api.create_container(
            "provisioner/device-stub:latest", name=name, labels={LABEL_INSTANCE: runtime.instance_id}
        )
        try:
            with pytest.raises(NotOwned) as caught:
                runtime.launch_device(session_id, "stub")
            assert not is_retryable(caught.value)
            assert docker_client.api.inspect_container(name)["Id"] == foreign["Id"]
        finally:
            docker_client.api.remove_container(foreign["Id"], force=True)

    def test_list_managed_is_one_api_call(self, runtime_factory, docker_client: docker.DockerClient) -> None:
        from tests.plugins.docker_engine import new_session_id_for_tests

        rt = runtime_factory()
        launched = {rt.launch_device(new_session_id_for_tests(), "stub").id for _ in range(6)}
        requests_sent: list[str] = []
        real_send = docker_client.api.send

        def counting_send(request, **kwargs):
            requests_sent.append(f"{request.method} {request.path_url}")
            return real_send(request, **kwargs)

        docker_client.api.send = counting_send
        try:
            managed = rt.list_managed()
        finally:
            del docker_client.api.send
        assert {c.id for c in managed} == launched
        assert len(requests_sent) == 1, requests_sent
        assert requests_sent[0].startswith("GET /v") and "/containers/json" in requests_sent[0]
        assert all(c.state == "running" and c.role == "device" and c.created_at for c in managed)


class TestFromSettings:
    def test_builds_from_docker_settings(self, docker_client: docker.DockerClient) -> None:
        settings = SimpleNamespace(
            instance_id="tsettings",
            docker=DockerSettings(network=TEST_NETWORK, profiles_file=TEST_PROFILES_FILE),
        )
        rt = ContainerRuntime.from_settings(settings)
        try:
            assert rt.instance_id == "tsettings"
            assert rt.publish_host == "127.0.0.1" and rt.publish_streams is True
            assert rt.stream_image == "provisioner/websockify:latest"
            assert {"stub", "android", "android-fake"} <= set(rt.profiles)
            assert rt.list_managed() == []
        finally:
            rt.client.close()


def _wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _listed(runtime: ContainerRuntime, name: str):
    return next((c for c in runtime.list_managed() if c.name == name), None)


class TestEmulatorLikeBoot:
    """The stub boots in stages like docker-android; the android profile's readiness path runs on it."""

    def _as_stub(self, profile, **update):
        fields = {"image": "provisioner/device-stub:latest", "devices": [], "no_new_privileges": True}
        fields.update(mem_limit="256m", cpus=0.5, health=profile.health.model_copy(update={"command": None}))
        return profile.model_copy(update={**fields, **update})

    def test_stub_slow_writes_creating_booting_ready_and_waits_for_ready(
        self, runtime_factory, session_id: str
    ) -> None:
        from provisioner.runtime.profiles import builtin_profiles

        slow = builtin_profiles()["stub-slow"]
        assert slow.env["BOOT_S"] == "45" and slow.readiness.kind == "status_file"
        fast = slow.model_copy(update={"env": {"BOOT_S": "3"}})
        rt = runtime_factory(profiles={"stub-slow": fast})
        started = time.monotonic()
        device = rt.launch_device(session_id, "stub-slow")
        assert rt._exec(device.id, ["cat", slow.readiness.status_file]) in ("CREATING", "BOOTING")
        rt.wait_device_ready(session_id, "stub-slow")
        assert time.monotonic() - started >= 2.5
        assert rt._exec(device.id, ["cat", slow.readiness.status_file]) == "READY"

    def test_android_profile_readiness_runs_on_the_stub(self, runtime_factory, session_id: str) -> None:
        from provisioner.runtime.profiles import builtin_profiles

        android = builtin_profiles()["android"]
        assert android.boot_timeout_s == 300
        rt = runtime_factory(profiles={"android": self._as_stub(android, env={"BOOT_S": "2"})})
        rt.launch_device(session_id, "android")
        info = rt.wait_device_ready(session_id, "android")  # no override: the profile's 300 s
        assert rt._exec(info.id, ["cat", android.readiness.status_file]) == "READY"

    def test_profile_boot_timeout_is_the_deadline_unless_overridden(
        self, runtime_factory, session_id: str
    ) -> None:
        from provisioner.runtime.profiles import builtin_profiles

        android = builtin_profiles()["android"]
        never = self._as_stub(android, env={"BOOT_S": "600"}, boot_timeout_s=2)
        rt = runtime_factory(profiles={"android": never})
        rt.launch_device(session_id, "android")
        with pytest.raises(NotReady) as caught:
            rt.wait_device_ready(session_id, "android")
        assert caught.value.deadline_s == 2
        assert "BOOTING" in caught.value.reason
        with pytest.raises(NotReady) as overridden:
            rt.wait_device_ready(session_id, "android", timeout_s=1)
        assert overridden.value.deadline_s == 1
        assert DockerSettings().readiness_timeout_s is None  # the global override is unset by default

    def test_device_runs_its_healthcheck_and_a_hung_vnc_turns_unhealthy(
        self, runtime: ContainerRuntime, session_id: str
    ) -> None:
        device = runtime.launch_device(session_id, "stub-hang")
        runtime.wait_device_ready(session_id, "stub-hang")
        _wait_for(lambda: getattr(_listed(runtime, device.name), "health", None) == "healthy", 10, "healthy")
        hung = _wait_for(
            lambda: (c := _listed(runtime, device.name)) and c.health == "unhealthy" and c, 20, "unhealthy"
        )
        assert hung.state == "running"  # the container runs on; only its health says it is dead
        with pytest.raises(NotReady):
            runtime.wait_device_ready(session_id, "stub-hang", timeout_s=2)

    def test_stream_healthcheck_reports_websockify_answering(
        self, runtime: ContainerRuntime, session_id: str
    ) -> None:
        runtime.launch_device(session_id, "stub")
        stream = runtime.launch_stream(session_id)
        _wait_for(lambda: getattr(_listed(runtime, stream.name), "health", None) == "healthy", 20, "healthy")

    def test_exit_after_stops_the_container(self, runtime: ContainerRuntime, session_id: str) -> None:
        device = runtime.launch_device(session_id, "stub-exit-later")
        runtime.wait_device_ready(session_id, "stub-exit-later")
        gone = _wait_for(
            lambda: (c := _listed(runtime, device.name)) and c.state == "exited" and c, 15, "exit"
        )
        assert gone.health is None
