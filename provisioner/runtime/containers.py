"""ContainerRuntime: device and stream containers of a device on one Docker host.

Every container carries ownership labels (runtime.model). A device lives only on its own pair
network (runtime.isolation); its stream joins that network, where it reaches the device by
container name, and the deployment's bridge network, where the gateway reaches the stream. Only the
stream's noVNC port is published, on publish_host, at a random host port. Launches are
idempotent per (instance, device, role): a running container of ours is returned, a stopped
one replaced. Docker exceptions are translated by runtime.errors and never leave this module.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import docker
from sqlalchemy.orm import Session

from provisioner.runtime.egress import (
    GUARD_IMAGE,
    engine_resolvers,
    guard_rules,
    guard_tag,
    listed_guards,
    remove_guards,
)
from provisioner.runtime.engines import EngineTLS, engine_client
from provisioner.runtime.errors import (
    ContainerExited,
    ContainerMissing,
    EngineError,
    NameConflict,
    NotOwned,
    NotReady,
    RuntimeFailure,
    UnknownProfile,
    WrongEngine,
    translate_docker_errors,
)
from provisioner.runtime.isolation import (
    ensure_pair_network,
    guard_pair_network,
    pair_network_name,
    pair_networks,
    remove_pair_network,
)
from provisioner.runtime.model import (
    LABEL_CREATED_AT,
    LABEL_DEVICE,
    LABEL_IMAGE,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_PROFILE,
    LABEL_ROLE,
    MANAGED_BY,
    ContainerInfo,
    Inventory,
    ManagedContainer,
    PairNetwork,
    Role,
    check_device_id,
    container_name,
    owner_filter,
    ownership_labels,
    parse_created_at,
    parse_health,
    stream_auth,
    vnc_password,
)
from provisioner.runtime.placement import LOCAL, Hosts, implicit_host
from provisioner.runtime.probes import (
    ProbeFailed,
    check_banner,
    fetch_page,
    read_banner_over_websocket,
    read_rfb_banner,
)
from provisioner.runtime.profiles import DeviceProfile, load_profiles

log = logging.getLogger(__name__)

STREAM_PORT = 6080
DEFAULT_VNC_PORT = 5900
STREAM_MEM_LIMIT = "128m"
STREAM_NANO_CPUS = 500_000_000
STREAM_READY_S = 30.0
# websockify as the image's `stream` user needs no capability; it writes only its web root (HOME).
STREAM_HARDENING: dict[str, Any] = {
    "user": "1000:1000",
    "cap_drop": ["ALL"],
    "cap_add": [],
    "pids_limit": 64,
    "read_only": True,
    "tmpfs": {"/tmp": "mode=1777", "/home/stream": "uid=1000,gid=1000,mode=0700"},
    "security_opt": ["no-new-privileges"],
}
LOG_TAIL_LINES = 30
_STOPPED_STATES = frozenset({"exited", "dead"})
_NETWORK_LOCK = threading.Lock()  # one creator per process; duplicates across processes are pruned


class DeviceNames:
    """Container names and device profiles of one deployment instance: the same on every engine,
    so a runtime over one engine and one over several hosts share them."""

    instance_id: str
    profiles: dict[str, DeviceProfile]

    def name_for(self, device_id: str, role: Role | str) -> str:
        return container_name(self.instance_id, device_id, Role(role))

    def profile(self, name: str) -> DeviceProfile:
        try:
            return self.profiles[name]
        except KeyError:
            raise UnknownProfile(name, list(self.profiles)) from None


class ContainerRuntime(DeviceNames):
    """Launch, probe, list and remove the containers of this deployment instance."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        instance_id: str,
        network: str,
        publish_host: str = "127.0.0.1",
        publish_streams: bool = True,
        stream_image: str,
        profiles: dict[str, DeviceProfile],
        host: str = LOCAL,
        egress_guard: bool = True,
    ) -> None:
        self.client = client
        self.hosts = Hosts(local=host)
        self.instance_id = instance_id
        self.network = network
        self.publish_host = publish_host
        self.publish_streams = publish_streams
        self.stream_image = stream_image
        self.profiles = dict(profiles)
        self.egress_guard = egress_guard

    @classmethod
    def from_settings(cls, settings: Any) -> ContainerRuntime:
        """Build the runtime from Settings (instance_id and the docker group)."""
        docker_settings = settings.docker
        with translate_docker_errors():
            # Each concurrent launch makes a few calls at once: size the pool past the launch slots.
            pool = max(10, 4 * docker_settings.launch_slots)
            client = engine_client(
                docker_settings.host,
                tls=EngineTLS.of(
                    *(
                        str(p) if p else None
                        for p in (docker_settings.tls_ca, docker_settings.tls_cert, docker_settings.tls_key)
                    ),
                    where="PROVISIONER_DOCKER__HOST",
                ),
                insecure_plain_tcp=docker_settings.insecure_plain_tcp,
                where="PROVISIONER_DOCKER__HOST",
                max_pool_size=pool,
            )
        return cls(
            client,
            instance_id=settings.instance_id,
            network=docker_settings.network,
            publish_host=docker_settings.publish_host,
            publish_streams=docker_settings.publish_streams,
            stream_image=docker_settings.stream_image,
            profiles=load_profiles(docker_settings.profiles_file),
            host=implicit_host(settings),
            egress_guard=docker_settings.egress_guard,
        )

    # -- the one host: the implicit row of the hosts table (runtime.placement) ---------------------------

    def place(self, db: Session, profile: str, *, only: str | None = None) -> str:
        """Every device goes to this engine (no capacity limit)."""
        return self.hosts.local

    def check_engine(self, profile: DeviceProfile) -> None:
        """The engine answers and the profile's device image, the stream image and (with the
        egress guard) the netguard image are present (EngineUnreachable, ImageMissing)."""
        with translate_docker_errors():
            self.client.ping()
        for image in (profile.image, self.stream_image, *([GUARD_IMAGE] if self.egress_guard else [])):
            with translate_docker_errors(image=image):
                self.client.images.get(image)  # ImageNotFound -> ImageMissing

    def this_engine_as(self, host: str) -> ContainerRuntime:
        """This engine, the one host's (WrongEngine for any other host)."""
        if host != self.hosts.local:
            raise WrongEngine(f"host {host} is not this process's engine ({self.hosts.local})")
        return self

    # -- launching ----------------------------------------------------------------------------

    def ensure_network(self) -> None:
        """Create the deployment's bridge network when it does not exist yet.

        Checked on every launch rather than cached: another process may remove an unused network.
        Docker allows two networks of one name (check_duplicate is best-effort), and a name that
        matches two makes every later container start fail; so when concurrent creators both won,
        every one of them keeps the oldest and removes the rest.
        """
        with _NETWORK_LOCK:
            matches = self._networks_named()
            if not matches:
                # A concurrent launch may create it first: a name conflict means it exists now.
                with contextlib.suppress(NameConflict), translate_docker_errors(container=self.network):
                    self.client.api.create_network(
                        self.network,
                        driver="bridge",
                        check_duplicate=True,
                        labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTANCE: self.instance_id},
                    )
                matches = self._networks_named()
            if len(matches) > 1:
                keep = min(matches, key=lambda n: (n.get("Created", ""), n["Id"]))
                for network in matches:
                    if network["Id"] != keep["Id"]:
                        with (
                            contextlib.suppress(RuntimeFailure),
                            translate_docker_errors(container=self.network),
                        ):
                            self.client.api.remove_network(network["Id"])

    def _networks_named(self) -> list[dict[str, Any]]:
        # The names filter matches substrings; keep the exact name.
        with translate_docker_errors():
            return [n for n in self.client.api.networks(names=[self.network]) if n["Name"] == self.network]

    def launch_device(self, device_id: str, profile: str, *, secret: str | None = None) -> ContainerInfo:
        """Start the device container (or return the running one); with `secret` its VNC server
        asks for a password (runtime.model.vnc_password)."""
        prof = self.profile(profile)
        name = self.name_for(device_id, Role.DEVICE)
        labels = {**ownership_labels(self.instance_id, device_id, Role.DEVICE), LABEL_PROFILE: prof.name}
        return self._launch(
            name,
            prof.image,
            device_id=device_id,
            network=pair_network_name(self.instance_id, device_id),
            command=prof.command,
            environment={
                **prof.env,
                "SESSION_ID": device_id,
                **({"VNC_PASSWORD": vnc_password(secret)} if secret else {}),
            },
            labels=labels,
            mem_limit=prof.mem_limit,
            nano_cpus=prof.nano_cpus,
            devices=prof.device_mappings(),
            ports=None,
            healthcheck=prof.healthcheck(),
            **prof.hardening(),
        )

    def launch_stream(self, device_id: str, *, secret: str | None = None) -> ContainerInfo:
        """Start the device's websockify/noVNC container aimed at its device (or return it); with
        `secret` it serves and relays nothing without it (runtime.model.stream_auth)."""
        device_name = self.name_for(device_id, Role.DEVICE)
        vnc_port = self._device_vnc_port(device_name)
        ports = {f"{STREAM_PORT}/tcp": (self.publish_host,)} if self.publish_streams else None
        return self._launch(
            self.name_for(device_id, Role.STREAM),
            self.stream_image,
            device_id=device_id,
            network=self.network,
            also_on=pair_network_name(self.instance_id, device_id),
            command=None,
            environment={
                "TARGET_HOST": device_name,
                "TARGET_PORT": str(vnc_port),
                "SESSION_ID": device_id,
                **({"STREAM_SECRET": secret} if secret else {}),
            },
            labels=ownership_labels(self.instance_id, device_id, Role.STREAM),
            mem_limit=STREAM_MEM_LIMIT,
            nano_cpus=STREAM_NANO_CPUS,
            devices=[],
            ports=ports,
            **STREAM_HARDENING,
        )

    def heal_stream(self, device_id: str, *, secret: str | None = None) -> ContainerInfo:
        """Bring the stream back: returns it if running, recreates it if it stopped."""
        return self.launch_stream(device_id, secret=secret)

    def _device_vnc_port(self, device_name: str) -> int:
        """The VNC port of the profile the device was launched with (default 5900)."""
        attrs = self._inspect_or_none(device_name)
        profile = (attrs["Config"].get("Labels") or {}).get(LABEL_PROFILE, "") if attrs else ""
        return self.profiles[profile].vnc_port if profile in self.profiles else DEFAULT_VNC_PORT

    def _launch(
        self,
        name: str,
        image: str,
        *,
        device_id: str,
        ports: dict | None,
        network: str,
        also_on: str | None = None,
        **config: Any,
    ) -> ContainerInfo:
        check_device_id(device_id)
        self.ensure_network()
        existing = self._inspect_or_none(name)
        if existing is not None:
            if not self._is_ours(existing):
                raise NotOwned(name, self.instance_id)
            if existing["State"]["Status"] == "running":
                return self._info(existing)
            self.remove(existing["Id"])
        # After remove(), which may drop it; its egress rules go in before a container joins it.
        ensure_pair_network(self.client, self.instance_id, device_id, guard=self.egress_guard)
        config["labels"] = {**config["labels"], LABEL_IMAGE: image}
        image_id = self.image_id(image)
        with translate_docker_errors(container=name, image=image):
            container = self.client.containers.create(
                image_id,
                name=name,
                detach=True,
                network=network,
                ports=ports or {},
                privileged=False,
                **config,
            )
        try:
            with translate_docker_errors(container=name):
                if also_on:
                    self.client.api.connect_container_to_network(container.id, also_on)
                container.start()
        except BaseException:
            self.remove(container.id)  # roll back the half-made container
            raise
        return self._info(self._inspect(container.id))

    def image_id(self, image: str) -> str:
        """The id of the image a tag names on this engine. Containers are created by image id (the
        tag goes in the provisioner.image label): listing a container created by tag makes the
        engine resolve that tag again, for every container of every list call (Docker's
        daemon/list.go refreshImage), which costs most of a list call's time (bench/reconcile.py)."""
        with translate_docker_errors(image=image):
            return self.client.api.inspect_image(image)["Id"]

    # -- observing ----------------------------------------------------------------------------

    def _inspect(self, name_or_id: str) -> dict[str, Any]:
        with translate_docker_errors(container=name_or_id):
            return self.client.api.inspect_container(name_or_id)

    def _inspect_or_none(self, name_or_id: str) -> dict[str, Any] | None:
        try:
            return self._inspect(name_or_id)
        except ContainerMissing:
            return None

    def _is_ours(self, attrs: dict[str, Any]) -> bool:
        labels = attrs["Config"].get("Labels") or {}
        return labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_INSTANCE) == self.instance_id

    def _info(self, attrs: dict[str, Any]) -> ContainerInfo:
        labels = attrs["Config"].get("Labels") or {}
        settings = attrs.get("NetworkSettings") or {}
        bindings = (settings.get("Ports") or {}).get(f"{STREAM_PORT}/tcp") or []
        host_port = next((int(b["HostPort"]) for b in bindings if b.get("HostPort")), None)
        # The stream's address on the deployment network; a device has one only on its pair network.
        networks = settings.get("Networks") or {}
        pair = pair_network_name(self.instance_id, labels.get(LABEL_DEVICE, ""))
        network = networks.get(self.network) or networks.get(pair) or {}
        return ContainerInfo(
            name=attrs["Name"].lstrip("/"),
            id=attrs["Id"],
            device_id=labels.get(LABEL_DEVICE, ""),
            role=Role(labels.get(LABEL_ROLE, Role.DEVICE.value)),
            state=attrs["State"]["Status"],
            host_port=host_port,
            ip=network.get("IPAddress") or None,
            labels=dict(labels),
        )

    def list_managed(self) -> list[ManagedContainer]:
        """Every container of this instance, running or not, from one label-filtered API call."""
        with translate_docker_errors():
            rows = self.client.api.containers(all=True, filters={"label": owner_filter(self.instance_id)})
        managed = []
        for row in rows:
            labels = row.get("Labels") or {}
            created_at = parse_created_at(labels.get(LABEL_CREATED_AT))
            if created_at is None and row.get("Created"):
                created_at = datetime.fromtimestamp(row["Created"], UTC)
            managed.append(
                ManagedContainer(
                    name=(row.get("Names") or ["/"])[0].lstrip("/"),
                    id=row["Id"],
                    device_id=labels.get(LABEL_DEVICE, ""),
                    role=labels.get(LABEL_ROLE, ""),
                    state=row.get("State", ""),
                    health=parse_health(row.get("Status", "")),
                    created_at=created_at,
                    labels=labels,
                )
            )
        return managed

    def inventory(self) -> Inventory:
        """This instance's containers and pair networks: one list call for each, and with the
        egress guard one netguard run listing the rules (before the networks: rules are installed
        after their network is created, so a rule listed belongs to a network listed or gone).
        Rules that cannot be listed leave ``guarded`` unknown (None) for this pass."""
        containers = self.list_managed()
        listed = self._listed_guards()
        networks = pair_networks(self.client, self.instance_id)
        if listed is None:
            return Inventory(containers, networks)
        guards, resolvers = listed
        checked = [
            replace(n, guarded=self._guard_complete(n, guards.get(n.name, set()), resolvers))
            for n in networks
        ]
        names = {n.name for n in networks}
        return Inventory(containers, checked, stray_guards=sorted(set(guards) - names))

    def _listed_guards(self) -> tuple[dict[str, set[str]], tuple[str, ...]] | None:
        """(this instance's rules by network, the engine's blocked nameservers), None unknown."""
        if not self.egress_guard:
            return None
        try:
            return listed_guards(self.client, self.instance_id), engine_resolvers(self.client)
        except RuntimeFailure as exc:
            log.warning("egress rules not listed this pass: %s", exc)
            return None

    def _guard_complete(self, network: PairNetwork, rules: set[str], resolvers: tuple[str, ...]) -> bool:
        if network.subnet is None or network.bridge is None:
            return False
        tag = guard_tag(self.instance_id, network.name)
        return set(guard_rules(tag, network.bridge, resolvers)) <= rules

    def logs(self, name_or_id: str, lines: int = LOG_TAIL_LINES) -> str:
        """The container's last log lines (stdout and stderr), or "" when they cannot be read."""
        try:
            with translate_docker_errors(container=name_or_id):
                raw = self.client.api.logs(name_or_id, stdout=True, stderr=True, tail=lines)
        except Exception:  # noqa: BLE001 - logs only decorate another error
            return ""
        return raw.decode("utf-8", errors="replace").rstrip()

    # -- removing -----------------------------------------------------------------------------

    def remove(self, name_or_id: str) -> bool:
        """Force-remove a container of ours with its anonymous volumes; False if already gone."""
        attrs = self._inspect_or_none(name_or_id)
        if attrs is None:
            return False
        if not self._is_ours(attrs):
            raise NotOwned(name_or_id, self.instance_id)
        try:
            with translate_docker_errors(container=name_or_id):
                self.client.api.remove_container(attrs["Id"], force=True, v=True)
        except ContainerMissing:
            return False
        except EngineError as exc:
            if exc.status_code == 409 and "in progress" in str(exc):  # someone else is removing it
                return False
            raise
        device_id = (attrs["Config"].get("Labels") or {}).get(LABEL_DEVICE)
        if device_id:  # the device's last container takes its pair network along
            self.remove_pair_network(device_id)
        return True

    def remove_pair_network(self, device_id: str) -> bool:
        """Remove the device's pair network and its egress rules; False when it is gone or a
        container still uses it."""
        return remove_pair_network(self.client, self.instance_id, device_id, guard=self.egress_guard)

    def guard_pair_network(self, device_id: str) -> bool:
        """(Re)install the egress rules of the device's pair network; False when it is gone."""
        return guard_pair_network(
            self.client, self.instance_id, pair_network_name(self.instance_id, device_id)
        )

    def remove_guard(self, network: str) -> bool:
        """Remove the egress rules of a pair network that no longer exists; False (kept) when a
        network of that name exists again."""
        with translate_docker_errors():
            if any(n["Name"] == network for n in self.client.api.networks(names=[network])):
                return False
        remove_guards(self.client, self.instance_id, [network])
        return True

    def remove_orphan_networks(self) -> list[str]:
        """Remove this instance's pair networks whose device has no container left (and egress
        rules whose network is gone); their names."""
        found = self.inventory()
        devices = {c.device_id for c in found.containers}
        for stray in found.stray_guards:
            self.remove_guard(stray)
        return [
            n.name
            for n in found.networks
            if n.device_id not in devices and self.remove_pair_network(n.device_id)
        ]

    def remove_device(self, device_id: str) -> list[str]:
        """Remove the device's stream and device containers; returns the names that were removed."""
        removed = []
        for role in (Role.STREAM, Role.DEVICE):
            name = self.name_for(device_id, role)
            if self.remove(name):
                removed.append(name)
        return removed

    # -- readiness ----------------------------------------------------------------------------

    def stream_url(self, info: ContainerInfo) -> str:
        """The browser URL of a published stream, for local runs."""
        if info.host_port is None:
            raise ValueError(f"stream {info.name} has no published port (publish_streams is off)")
        return f"http://{self.publish_host}:{info.host_port}/vnc.html?autoconnect=1&path=websockify"

    def stream_route(self, info: ContainerInfo) -> str | None:
        """host:port where the gateway reaches this stream: its address on the deployment network
        (port 6080), else its published port on publish_host; None when it has neither."""
        if info.ip:
            return f"{info.ip}:{STREAM_PORT}"
        if info.host_port is not None:
            return f"{self.publish_host}:{info.host_port}"
        return None

    def wait_device_ready(
        self, device_id: str, profile: str, timeout_s: float | None = None
    ) -> ContainerInfo:
        """Wait until the device reports booted (profile readiness) and its VNC port answers RFB.

        The deadline is the profile's boot_timeout_s unless `timeout_s` overrides it."""
        prof = self.profile(profile)
        name = self.name_for(device_id, Role.DEVICE)
        command = prof.readiness.probe_command()
        booted = command is None

        def probe(info: ContainerInfo) -> None:
            nonlocal booted
            if not booted:
                output = self._exec(info.id, command or [])
                if output != prof.readiness.ready_value:
                    raise ProbeFailed(
                        f"{' '.join(command or [])} says {output[:60]!r}, not {prof.readiness.ready_value!r}"
                    )
                booted = True
            self._probe_device_vnc(device_id, info, prof.vnc_port)

        return self._wait(name, timeout_s if timeout_s is not None else prof.boot_timeout_s, probe)

    def _probe_device_vnc(self, device_id: str, info: ContainerInfo, port: int) -> None:
        """Read the device's RFB banner from its running stream, else directly from this process.

        The device is on its pair network only (runtime.isolation): a worker on the host reaches
        that network's addresses, a worker in a container (compose) does not, but the device's
        stream always does, so when the stream runs the banner is read from inside it."""
        stream = self._inspect_or_none(self.name_for(device_id, Role.STREAM))
        if stream is not None and stream["State"]["Status"] == "running":
            script = f"exec 3<>/dev/tcp/{info.name}/{port} && head -c 12 <&3"
            try:
                output = self._exec(stream["Id"], ["timeout", "2", "bash", "-c", script])
            except ContainerMissing as exc:  # the stream went away meanwhile: probe again
                raise ProbeFailed(str(exc)) from exc
            check_banner(f"{output}\n".encode(), f"VNC {info.name}:{port} from {stream['Name'].lstrip('/')}")
            return
        if not info.ip:
            raise ProbeFailed(f"no address on network {pair_network_name(self.instance_id, device_id)}")
        read_rfb_banner(info.ip, port)

    def wait_stream_ready(
        self, device_id: str, timeout_s: float | None = None, *, secret: str | None = None
    ) -> ContainerInfo:
        """Wait until noVNC's page is served and the WebSocket relays the device's RFB banner
        (presenting `secret` when the stream was started with one)."""
        name = self.name_for(device_id, Role.STREAM)
        headers = stream_auth(secret)

        def probe(info: ContainerInfo) -> None:
            if info.host_port is not None:
                base = f"{self.publish_host}:{info.host_port}"
            elif info.ip:
                base = f"{info.ip}:{STREAM_PORT}"
            else:
                raise ProbeFailed(f"no address on network {self.network}")
            fetch_page(f"http://{base}/vnc.html", headers=headers)
            read_banner_over_websocket(f"ws://{base}/websockify", headers=headers)

        return self._wait(name, timeout_s if timeout_s is not None else STREAM_READY_S, probe)

    def _exec(self, container_id: str, command: list[str]) -> str:
        try:
            with translate_docker_errors(container=container_id):
                result = self.client.api.exec_create(container_id, command, stdout=True, stderr=True)
                output = self.client.api.exec_start(result["Id"])
        except EngineError as exc:
            if exc.status_code == 409:  # stopped meanwhile; the next inspect reports how
                raise ProbeFailed(str(exc)) from exc
            raise
        return output.decode("utf-8", errors="replace").strip()

    def _wait(self, name: str, timeout_s: float, probe: Callable[[ContainerInfo], None]) -> ContainerInfo:
        deadline = time.monotonic() + timeout_s
        delay = 0.2
        reason = "not probed yet"
        while True:
            attrs = self._inspect(name)
            info = self._info(attrs)
            if info.state in _STOPPED_STATES:
                raise ContainerExited(
                    name,
                    exit_code=attrs["State"].get("ExitCode"),
                    logs=self.logs(name),
                    profile=info.labels.get(LABEL_PROFILE),
                )
            if info.state == "running":
                try:
                    probe(info)
                    return info
                except ProbeFailed as exc:
                    reason = str(exc)
            else:
                reason = f"container is {info.state}"
            if time.monotonic() >= deadline:
                raise NotReady(name, deadline_s=timeout_s, reason=reason, logs=self.logs(name))
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 1.0)
