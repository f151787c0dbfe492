"""Two extra Docker engines on this machine, standing in for two more Docker hosts (marker multihost).

Each engine is a real `dockerd` with its own --data-root, --exec-root, --pidfile, unix socket
(/run/provisioner-test-dockerd-<n>.sock; the fixtures' own admin client and a worker on that host
use it), a TLS-only API on tcp://127.0.0.<10+n>:2376 (--tlsverify, certificates made by
tests/plugins/engine_tls for this session; the provisioner reaches the hosts there) and address range 10.213.<16n>.0/20 for its networks;
its default bridge is its own interface (provtd<n>, 10.214.<n>.1/24; every container of ours
lives on a user-defined network) and the engine leaves iptables alone (--iptables=false). The host's FORWARD policy
(set by the main engine) drops bridged traffic it has no rule for, so one DOCKER-USER rule
per engine accepts traffic inside its own range and is removed at the end.

Slots <n> are taken with a file lock, so two test sessions on one machine never share an engine.
The data root is kept between sessions (/var/lib/provisioner-test-dockerd-<n>): the project
images are loaded (`docker save | docker -H ... load`, no registry) only when their id differs
from the main engine's. The engines are shared by every multihost test (session scope) and
stopped at the end, after every container and network on them is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import docker
import docker.errors
import pytest

from provisioner.runtime.engines import EngineTLS
from provisioner.runtime.hosts import HostEngine
from tests.plugins.docker_engine import REQUIRED_IMAGES
from tests.plugins.engine_tls import ServerFiles, make_certificates

ENGINE_COUNT = 2
MAX_SLOTS = 8
START_TIMEOUT_S = 60.0


def _rule(slot: int) -> list[str]:
    subnet = f"10.213.{16 * slot}.0/20"
    return [
        "DOCKER-USER",
        "-s",
        subnet,
        "-d",
        subnet,
        "-m",
        "comment",
        "--comment",
        "provisioner-test",
        "-j",
        "ACCEPT",
    ]


@dataclass
class ExtraEngine:
    """One extra engine: its number, its TLS URL and client files (how the provisioner reaches the
    host), its unix socket (the host's local engine, for its worker), and an admin client."""

    slot: int
    url: str
    tls: EngineTLS
    socket_url: str
    client: docker.DockerClient
    process: subprocess.Popen

    def host_fields(self) -> dict[str, str]:
        """The engine's fields for store.hosts.add_host."""
        return {
            "docker_url": self.url,
            "tls_ca": self.tls.ca,
            "tls_cert": self.tls.cert,
            "tls_key": self.tls.key,
        }

    def engine(self) -> HostEngine:
        return HostEngine(self.name, self.url, self.stream_address, tls=self.tls)

    @property
    def name(self) -> str:
        return f"engine{self.slot}"

    @property
    def stream_address(self) -> str:
        """Where this host publishes streams: a loopback address of its own, so two engines (which
        pick host ports independently) never publish the same address and port."""
        return f"127.0.0.{10 + self.slot}"


def take_slot() -> tuple[int, IO[str]]:
    for slot in range(1, MAX_SLOTS + 1):
        handle = open(f"/run/provisioner-test-dockerd-{slot}.lock", "w")  # noqa: SIM115 - held until the end
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        return slot, handle
    pytest.fail(f"all {MAX_SLOTS} test dockerd slots are taken by other test sessions", pytrace=False)


def _own_bridge(slot: int) -> str:
    """The slot's default-bridge interface (made once, kept): 10.214.<slot>.1/24, outside every pool."""
    name = f"provtd{slot}"
    if subprocess.run(["ip", "link", "show", name], capture_output=True, check=False).returncode != 0:
        for command in (
            ["ip", "link", "add", name, "type", "bridge"],
            ["ip", "addr", "add", f"10.214.{slot}.1/24", "dev", name],
            ["ip", "link", "set", name, "up"],
        ):
            subprocess.run(command, capture_output=True, check=True)
    return name


def _remove_stale_bridges(slot: int) -> list[str]:
    """Delete the host bridges of this slot's earlier engine (a stopped engine's networks stay on
    the host as link-down bridges; with the network store emptied, nothing would ever remove them).
    Only bridges with an address in this slot's own pool are touched: no other engine uses it."""
    pool = ipaddress.ip_network(f"10.213.{16 * slot}.0/20")
    shown = subprocess.run(["ip", "-j", "addr", "show", "type", "bridge"], capture_output=True, text=True)
    stale = [
        link["ifname"]
        for link in json.loads(shown.stdout or "[]")
        if link["ifname"].startswith("br-")
        and any(
            a.get("family") == "inet" and ipaddress.ip_address(a["local"]) in pool
            for a in link.get("addr_info", [])
        )
    ]
    for name in stale:
        subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
    return stale


TLS_DIR = Path("/run/provisioner-test-dockerd-tls")


def api_address(slot: int) -> str:
    return f"127.0.0.{10 + slot}"


@functools.cache
def _certificates(slot: int) -> tuple[EngineTLS, ServerFiles]:
    """Made once per slot and test session (an engine restarted mid-test keeps its certificates)."""
    client_tls, servers = make_certificates(TLS_DIR / str(slot), [api_address(slot)])
    return client_tls, servers[api_address(slot)]


def start_engine(slot: int) -> ExtraEngine:
    client_tls, server = _certificates(slot)
    socket = f"/run/provisioner-test-dockerd-{slot}.sock"
    exec_root = Path(f"/run/provisioner-test-dockerd-{slot}")
    data_root = Path(f"/var/lib/provisioner-test-dockerd-{slot}")
    pidfile = exec_root.with_suffix(".pid")
    log = Path(f"/tmp/provisioner-test-dockerd-{slot}.log")
    _stop_stale(pidfile)
    data_root.mkdir(parents=True, exist_ok=True)
    # Networks are per test session: start from an empty network store. A store written under
    # another bridge setting (an older run with the default bridge) makes the engine delete that
    # bridge's interface on start, and that interface is docker0, the main engine's.
    shutil.rmtree(data_root / "network", ignore_errors=True)
    _remove_stale_bridges(slot)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket)
    pool = f"base=10.213.{16 * slot}.0/20,size=26"
    bridge = _own_bridge(slot)
    command = [
        shutil.which("dockerd") or "dockerd",
        f"--data-root={data_root}",
        f"--exec-root={exec_root}",
        f"--pidfile={pidfile}",
        f"-H=unix://{socket}",
        f"-H=tcp://{api_address(slot)}:2376",
        "--tlsverify",
        f"--tlscacert={server.ca}",
        f"--tlscert={server.cert}",
        f"--tlskey={server.key}",
        # Its own default bridge, never --bridge=none: an engine started with the bridge off deletes
        # the interface named docker0, which is the main engine's (its builds then fail).
        f"--bridge={bridge}",
        "--iptables=false",
        "--ip-masq=false",
        f"--default-address-pool={pool}",
        "--log-level=warn",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            client = docker.DockerClient(base_url=f"unix://{socket}", timeout=60)
            client.ping()
            break
        except (docker.errors.DockerException, OSError) as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = log.read_text(errors="replace")[-2000:]
                pytest.fail(
                    f"test dockerd {slot} did not start ({exc}); its log ends:\n{tail}", pytrace=False
                )
            time.sleep(0.2)
    return ExtraEngine(
        slot=slot,
        url=f"tcp://{api_address(slot)}:2376",
        tls=client_tls,
        socket_url=f"unix://{socket}",
        client=client,
        process=process,
    )


def _stop_stale(pidfile: Path) -> None:
    """A dockerd left by a killed test session on this slot (we hold the slot's lock): stop it."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if str(pidfile).encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid)


def _wait_gone(pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def load_images(main: docker.DockerClient, engine: ExtraEngine) -> None:
    """Copy the project images from the main engine when the engine lacks them or has old ones."""
    stale = []
    for tag in REQUIRED_IMAGES:
        want = main.images.get(tag).id
        try:
            have = engine.client.images.get(tag).id
        except docker.errors.ImageNotFound:
            have = None
        if have != want:
            stale.append(tag)
    if not stale:
        return
    save = subprocess.Popen(["docker", "save", *stale], stdout=subprocess.PIPE)
    load = subprocess.run(
        ["docker", "-H", engine.socket_url, "load", "-q"], stdin=save.stdout, capture_output=True, check=False
    )
    assert save.stdout is not None
    save.stdout.close()
    if save.wait() != 0 or load.returncode != 0:
        pytest.fail(f"loading {stale} into test dockerd {engine.slot} failed: {load.stderr!r}", pytrace=False)


def clear_engine(engine: ExtraEngine) -> None:
    """Remove every container and user network: the engine belongs to this test session only."""
    for row in engine.client.api.containers(all=True):
        with contextlib.suppress(docker.errors.NotFound):
            engine.client.api.remove_container(row["Id"], force=True, v=True)
    for network in engine.client.api.networks():
        if network["Name"] not in {"none", "host", "bridge"}:
            with contextlib.suppress(docker.errors.APIError):
                engine.client.api.remove_network(network["Id"])


def stop_engine(engine: ExtraEngine) -> None:
    """Stop an engine's dockerd (and its containerd) now: the host goes away."""
    engine.process.terminate()
    try:
        engine.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        engine.process.kill()
        engine.process.wait()


@contextlib.contextmanager
def engine_stopped(engine: ExtraEngine) -> Iterator[None]:
    """The engine is stopped inside the block (its host is gone) and started again after it, with
    nothing left on it, so the next multihost test finds it as the fixture made it."""
    stop_engine(engine)
    try:
        yield
    finally:
        engine.client.close()
        fresh = start_engine(engine.slot)
        engine.client, engine.process, engine.tls = fresh.client, fresh.process, fresh.tls
        clear_engine(engine)


def _iptables(action: str, slot: int) -> int:
    return subprocess.run(["iptables", action, *_rule(slot)], capture_output=True, check=False).returncode


@pytest.fixture(scope="session")
def extra_engines(docker_client: docker.DockerClient) -> Iterator[list[ExtraEngine]]:
    """Two extra running engines with the project images, shared by the multihost tests."""
    slots = [take_slot() for _ in range(ENGINE_COUNT)]
    engines: list[ExtraEngine] = []
    try:
        for slot, _ in slots:
            if _iptables("-C", slot) != 0:  # left by a killed session on this slot: keep one
                _iptables("-I", slot)
            engine = start_engine(slot)
            engines.append(engine)
            clear_engine(engine)
            load_images(docker_client, engine)
        yield engines
    finally:
        for engine in engines:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                clear_engine(engine)
            engine.client.close()
            stop_engine(engine)
        for slot, handle in slots:
            _iptables("-D", slot)
            handle.close()
