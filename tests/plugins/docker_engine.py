"""The Docker engine for the test session, and runtimes whose containers are removed at the end.

The engine and the images must already be there (the test command runs scripts/ensure-docker
and scripts/build-images first); when they are not, the tests fail with the command to run,
they are not skipped. Every runtime made here gets a fresh instance id ("t" + hex), and at the
end of the session every container and network labelled with one of those ids is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable, Iterator

import docker
import docker.errors
import pytest

from provisioner.runtime import ContainerRuntime, load_profiles
from provisioner.runtime.egress import GUARD_IMAGE, guard_tag, netguard
from provisioner.runtime.model import LABEL_INSTANCE
from tests.harness.services import TEST_PROFILES_FILE

# One per test session (each xdist worker is one): a session removes the network it created at its
# end, while another session on the same engine may be about to start a container on it.
TEST_NETWORK = f"provisioner-test-{os.getpid()}"
STREAM_IMAGE = "provisioner/websockify:latest"
REQUIRED_IMAGES = ("provisioner/device-stub:latest", STREAM_IMAGE, GUARD_IMAGE)

_test_instances: list[str] = []

RuntimeFactory = Callable[..., ContainerRuntime]


def new_test_instance_id() -> str:
    instance_id = "t" + secrets.token_hex(4)
    _test_instances.append(instance_id)
    return instance_id


def _remove_test_leftovers(client: docker.DockerClient) -> None:
    for instance_id in _test_instances:
        for row in client.api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance_id}"}):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(row["Id"], force=True, v=True)
    for instance_id in _test_instances:
        for network in client.api.networks(filters={"label": f"{LABEL_INSTANCE}={instance_id}"}):
            # Fails while another test session on the same engine still uses it; that one removes it.
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_network(network["Id"])
    _remove_test_guards(client)


def _remove_test_guards(client: docker.DockerClient) -> None:
    """The egress rules of the test instances' networks that are gone (one netguard list, one
    removal); a network another session still uses keeps its rules."""
    left = {n["Name"] for n in client.api.networks(filters={"label": LABEL_INSTANCE})}
    listed = set(re.findall(r"--comment (\S+)", netguard(client, "list")))
    tags = [
        tag
        for instance_id in _test_instances
        for tag in listed
        if tag.startswith(guard_tag(instance_id, ""))
        and tag.removeprefix(guard_tag(instance_id, "")) not in left
    ]
    if tags:
        netguard(client, "remove", *sorted(tags))


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the local engine; fails (never skips) when there is none or images are missing."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(
            f"No Docker engine answers ({exc}). Start one with `scripts/ensure-docker` "
            "(as root it starts dockerd in the background), then `scripts/build-images`.",
            pytrace=False,
        )
    missing = []
    for tag in REQUIRED_IMAGES:
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            missing.append(tag)
    if missing:
        pytest.fail(f"Images {', '.join(missing)} are missing: run `scripts/build-images`.", pytrace=False)
    try:
        yield client
    finally:
        _remove_test_leftovers(client)
        client.close()


@pytest.fixture(scope="session")
def runtime_factory(docker_client: docker.DockerClient) -> RuntimeFactory:
    """Make a runtime with its own test instance id (pass instance_id to share one)."""

    def make(instance_id: str | None = None, **overrides: object) -> ContainerRuntime:
        options: dict = {
            "network": TEST_NETWORK,
            "publish_host": "127.0.0.1",
            "publish_streams": True,
            "stream_image": STREAM_IMAGE,
            "profiles": load_profiles(TEST_PROFILES_FILE),
        }
        options.update(overrides)
        if instance_id is None:
            instance_id = new_test_instance_id()
        elif instance_id not in _test_instances:
            _test_instances.append(instance_id)
        return ContainerRuntime(docker_client, instance_id=instance_id, **options)

    return make


@pytest.fixture(scope="session")
def runtime(runtime_factory: RuntimeFactory) -> ContainerRuntime:
    """The session's runtime: test instance id, network TEST_NETWORK, test profiles added."""
    return runtime_factory()


def new_session_id_for_tests() -> str:
    """A fresh valid session id (12 chars [a-z0-9], first a letter)."""
    try:
        from provisioner.store.models import new_session_id
    except ImportError:  # store not importable here: same shape, generated locally
        return "s" + secrets.token_hex(6)[:11]
    return new_session_id()


@pytest.fixture
def session_id() -> str:
    """A fresh valid session id for one test."""
    return new_session_id_for_tests()
