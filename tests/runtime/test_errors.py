"""Docker exceptions are translated in one place; one function decides what is retried."""

from __future__ import annotations

import docker
import docker.errors
import pytest
import requests

from provisioner.runtime import ContainerRuntime, load_profiles
from provisioner.runtime.errors import (
    ContainerExited,
    ContainerMissing,
    EngineError,
    EngineUnreachable,
    ImageMissing,
    NameConflict,
    NotReady,
    UnknownProfile,
    is_retryable,
    translate_docker_errors,
)


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("boom", response=response, explanation=explanation)


class TestTranslate:
    @pytest.mark.parametrize(
        ("raised", "expected"),
        [
            (docker.errors.ImageNotFound("No such image: x"), ImageMissing),
            (docker.errors.NotFound("No such container: c"), ContainerMissing),
            (_api_error(409, 'Conflict. The container name "/c" is already in use'), NameConflict),
            (_api_error(500, "driver failed"), EngineError),
            (requests.exceptions.ConnectionError("refused"), EngineUnreachable),
            (docker.errors.DockerException("Error while fetching server API version"), EngineUnreachable),
        ],
    )
    def test_mapping(self, raised: Exception, expected: type[Exception]) -> None:
        with pytest.raises(expected) as caught, translate_docker_errors(container="c", image="x"):
            raise raised
        assert caught.value.__cause__ is raised

    def test_messages_say_what_to_run(self) -> None:
        assert "scripts/build-images" in str(ImageMissing("provisioner/device-stub:latest"))
        assert "scripts/ensure-docker" in str(EngineUnreachable("no socket"))


class TestIsRetryable:
    @pytest.mark.parametrize(
        ("exc", "retry"),
        [
            (EngineUnreachable("hiccup"), True),
            (EngineError("x", status_code=500), True),
            (EngineError("x", status_code=503), True),
            (EngineError("x", status_code=400), False),
            (NameConflict("c"), True),
            (ImageMissing("i"), False),
            (ContainerExited("c", exit_code=1, logs=""), False),
            (NotReady("c", deadline_s=1, reason="r", logs=""), False),
            (UnknownProfile("p", ["stub"]), False),
            (ValueError("not ours"), False),
        ],
    )
    def test_table(self, exc: Exception, retry: bool) -> None:
        assert is_retryable(exc) is retry


class TestUnreachableEngine:
    def test_launch_without_engine_says_how_to_start_one(self, session_id: str) -> None:
        client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
        rt = ContainerRuntime(
            client, instance_id="tnoengine", network="n", stream_image="s", profiles=load_profiles()
        )
        with pytest.raises(EngineUnreachable, match="scripts/ensure-docker") as caught:
            rt.launch_device(session_id, "stub")
        assert is_retryable(caught.value)
        with pytest.raises(EngineUnreachable):
            rt.list_managed()
