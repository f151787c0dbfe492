"""One ContainerRuntime per Docker host, and one label-filtered list call per host.

Every host's runtime has the same instance id, network, stream image and profiles; it differs in
its engine (the host's Docker URL) and where stream ports are published (the host's stream
address, which the gateway reaches). Engine clients are made lazily and cached by URL; an engine
that does not answer costs its own call at most ENGINE_TIMEOUT_S and never stalls the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker

from provisioner.runtime.containers import ContainerRuntime
from provisioner.runtime.engines import DOCKER_API_VERSION, EngineTLS, engine_client
from provisioner.runtime.errors import RuntimeFailure
from provisioner.runtime.model import Inventory
from provisioner.runtime.profiles import DeviceProfile, load_profiles

ENGINE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class HostEngine:
    """What placement and observation need of a hosts row: its engine (URL, TLS files, the
    lab-only plain TCP switch; runtime.engines) and where its streams are published."""

    name: str
    docker_url: str
    stream_address: str
    tls: EngineTLS | None = None
    insecure_plain_tcp: bool = False


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


class HostEngines:
    """The runtimes of the hosts table's hosts (made on first use, cached by engine URL)."""

    def __init__(
        self,
        *,
        instance_id: str,
        network: str,
        stream_image: str,
        profiles: Mapping[str, DeviceProfile],
        publish_streams: bool = True,
        egress_guard: bool = True,
        timeout_s: float = ENGINE_TIMEOUT_S,
        engine_settings: Callable[[str], Any] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.network = network
        self.stream_image = stream_image
        self.profiles = dict(profiles)
        self.publish_streams = publish_streams
        self.egress_guard = egress_guard
        self.timeout_s = timeout_s
        self._engine_settings = engine_settings or (lambda name: None)
        self._clients: dict[tuple[str, EngineTLS | None], docker.DockerClient] = {}
        self._lock = threading.Lock()
        # Kept across passes: starting threads on every pass costs more than a list call's parsing.
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings) -> HostEngines:  # noqa: ANN001 - settings.Settings
        docker_settings = settings.docker
        return cls(
            instance_id=settings.instance_id,
            network=docker_settings.network,
            stream_image=docker_settings.stream_image,
            profiles=load_profiles(docker_settings.profiles_file),
            publish_streams=docker_settings.publish_streams,
            egress_guard=docker_settings.egress_guard,
            engine_settings=settings.hosts.engine,
        )

    def engine(self, row: Any) -> HostEngine:
        """A hosts row as a HostEngine, with this machine's TLS files for it where
        PROVISIONER_HOSTS__<NAME>__TLS_* name them (each over the row's path)."""
        local = self._engine_settings(row.name)
        paths = [
            getattr(local, f"tls_{part}", None) or getattr(row, f"tls_{part}", None)
            for part in ("ca", "cert", "key")
        ]
        return HostEngine(
            row.name,
            row.docker_url,
            row.stream_address,
            tls=EngineTLS.of(*(str(p) if p else None for p in paths), where=f"host {row.name}"),
            insecure_plain_tcp=bool(getattr(row, "insecure_plain_tcp", False)),
        )

    def client(self, host: HostEngine) -> docker.DockerClient:
        """The host's engine client (made once per URL and TLS files); EngineRefused for plain
        tcp:// off this machine (runtime.engines)."""
        key = (host.docker_url, host.tls)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = engine_client(
                    host.docker_url,
                    tls=host.tls,
                    insecure_plain_tcp=host.insecure_plain_tcp,
                    where=f"host {host.name}",
                    version=DOCKER_API_VERSION,
                    timeout=self.timeout_s,
                )
                self._clients[key] = client
            return client

    def runtime(self, host: HostEngine) -> ContainerRuntime:
        return ContainerRuntime(
            self.client(host),
            instance_id=self.instance_id,
            network=self.network,
            publish_host=host.stream_address,
            publish_streams=self.publish_streams,
            stream_image=self.stream_image,
            profiles=self.profiles,
            egress_guard=self.egress_guard,
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
