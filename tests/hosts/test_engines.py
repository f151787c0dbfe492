"""The extra engines are real Docker hosts: a session's device and stream run and stream on each."""

from __future__ import annotations

import pytest

from provisioner.runtime import ContainerRuntime, RuntimeFailure, load_profiles
from provisioner.runtime.engines import EngineTLS, engine_client
from provisioner.runtime.errors import translate_docker_errors
from provisioner.runtime.probes import fetch_page
from tests.plugins.docker_engine import (
    STREAM_IMAGE,
    TEST_PROFILES_FILE,
    new_session_id_for_tests,
    new_test_instance_id,
)
from tests.plugins.engine_tls import make_certificates

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


class TestEnginesOverTLS:
    def test_the_provisioner_reaches_each_engine_over_verified_tls(self, extra_engines) -> None:
        for engine in extra_engines:
            client = engine_client(engine.url, tls=engine.tls, where=engine.name, timeout=10)
            try:
                assert client.ping()
                assert client.api.base_url.startswith("https://")
            finally:
                client.close()

    def test_without_our_client_certificate_or_without_tls_the_engine_answers_nothing(
        self, extra_engines, tmp_path
    ) -> None:
        engine = extra_engines[0]
        # Loopback plain tcp:// is allowed by our rules: the engine itself refuses it.
        with pytest.raises(RuntimeFailure):
            engine_client(engine.url, where=engine.name, timeout=10).version()
        # A client certificate from another CA: the engine's verification rejects it.
        stranger, _ = make_certificates(tmp_path / "stranger", [])
        forged = EngineTLS(engine.tls.ca, stranger.cert, stranger.key)
        client = engine_client(engine.url, tls=forged, where=engine.name, timeout=10)
        with pytest.raises(RuntimeFailure), translate_docker_errors():
            client.version()
        client.close()
