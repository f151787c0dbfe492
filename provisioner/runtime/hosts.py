"""One ContainerRuntime per Docker host, and one label-filtered list call per host.

Every host's runtime has the same instance id, network, stream image and profiles; it differs in
its engine (the host's Docker URL) and where stream ports are published (the host's stream
address, which the gateway reaches). Engine clients are made lazily and cached by URL; an engine
that does not answer costs its own call at most ENGINE_TIMEOUT_S and never stalls the others.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import docker

from provisioner.runtime.containers import ContainerRuntime
from provisioner.runtime.errors import RuntimeFailure, translate_docker_errors
from provisioner.runtime.model import Inventory
from provisioner.runtime.profiles import DeviceProfile

ENGINE_TIMEOUT_S = 5.0
DOCKER_API_VERSION = "1.41"  # fixed: a client made for a silent engine must not ask it first


@dataclass(frozen=True)
class HostEngine:
    """What placement and observation need of a hosts row."""

    name: str
    docker_url: str
    stream_address: str


@dataclass(frozen=True)
class HostListing:
    """One host's answer to the pass's list calls: its containers and pair networks, or why it
    gave none."""

    host: str
    inventory: Inventory | None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.inventory is not None


class HostRuntimes:
    """The runtimes of the hosts table's hosts (made on first use, cached by engine URL)."""

    def __init__(
        self,
        *,
        instance_id: str,
        network: str,
        stream_image: str,
        profiles: Mapping[str, DeviceProfile],
        publish_streams: bool = True,
        timeout_s: float = ENGINE_TIMEOUT_S,
    ) -> None:
        self.instance_id = instance_id
        self.network = network
        self.stream_image = stream_image
        self.profiles = dict(profiles)
        self.publish_streams = publish_streams
        self.timeout_s = timeout_s
        self._clients: dict[str, docker.DockerClient] = {}
        self._lock = threading.Lock()
        # Kept across passes: starting threads on every pass costs more than a list call's parsing.
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings) -> HostRuntimes:  # noqa: ANN001 - settings.Settings
        from provisioner.runtime.profiles import load_profiles

        docker_settings = settings.docker
        return cls(
            instance_id=settings.instance_id,
            network=docker_settings.network,
            stream_image=docker_settings.stream_image,
            profiles=load_profiles(docker_settings.profiles_file),
            publish_streams=docker_settings.publish_streams,
        )

    def client(self, docker_url: str) -> docker.DockerClient:
        with self._lock:
            client = self._clients.get(docker_url)
            if client is None:
                with translate_docker_errors():
                    client = docker.DockerClient(
                        base_url=docker_url, version=DOCKER_API_VERSION, timeout=self.timeout_s
                    )
                self._clients[docker_url] = client
            return client

    def runtime(self, host: HostEngine) -> ContainerRuntime:
        return ContainerRuntime(
            self.client(host.docker_url),
            instance_id=self.instance_id,
            network=self.network,
            publish_host=host.stream_address,
            publish_streams=self.publish_streams,
            stream_image=self.stream_image,
            profiles=self.profiles,
        )

    def list_each(self, hosts: list[HostEngine]) -> dict[str, HostListing]:
        """Per host, one label-filtered container list call and one pair network list call, all
        hosts at once; a silent engine is a listing with its error, never an exception."""

        def one(host: HostEngine) -> HostListing:
            try:
                return HostListing(host.name, self.runtime(host).inventory())
            except RuntimeFailure as exc:
                return HostListing(host.name, None, f"{type(exc).__name__}: {exc}"[:500])

        if not hosts:
            return {}
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="host-list")
            pool = self._pool
        return {listing.host: listing for listing in pool.map(one, hosts)}

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
            for client in self._clients.values():
                client.close()
            self._clients.clear()
