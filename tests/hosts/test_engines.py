"""The extra engines are real Docker hosts: a session's device and stream run and stream on each."""

from __future__ import annotations

import pytest

from provisioner.runtime import ContainerRuntime, load_profiles
from provisioner.runtime.probes import fetch_page
from tests.plugins.docker_engine import (
    STREAM_IMAGE,
    TEST_PROFILES_FILE,
    new_session_id_for_tests,
    new_test_instance_id,
)

pytestmark = [pytest.mark.docker, pytest.mark.multihost]


def test_each_extra_engine_runs_a_device_and_serves_its_stream(extra_engines) -> None:
    instance_id = new_test_instance_id()
    for engine in extra_engines:
        runtime = ContainerRuntime(
            engine.client,
            instance_id=instance_id,
            network="provisioner-test",
            stream_image=STREAM_IMAGE,
            profiles=load_profiles(TEST_PROFILES_FILE),
            publish_host=engine.stream_address,
        )
        session_id = new_session_id_for_tests()
        runtime.launch_device(session_id, "stub")
        runtime.wait_device_ready(session_id, "stub", timeout_s=30)
        runtime.launch_stream(session_id)
        stream = runtime.wait_stream_ready(session_id, timeout_s=30)
        assert stream.ip is not None
        first, second, third, _ = (int(part) for part in stream.ip.split("."))
        assert (first, second) == (10, 213)
        assert 16 * engine.slot <= third < 16 * (engine.slot + 1)  # the engine's own address range
        fetch_page(f"http://{engine.stream_address}:{stream.host_port}/vnc.html")
        names = {c.name for c in runtime.list_managed()}
        assert names == {runtime.name_for(session_id, "device"), runtime.name_for(session_id, "stream")}
