"""How a Docker engine client is built for a URL: TLS or SSH to anything off this machine.

Whoever reaches a Docker engine's API is root on its host, so a remote engine is spoken to over
TLS with both sides verified (`tcp://` plus a CA, a client certificate and its key) or over SSH
(`ssh://user@host`, through paramiko: `pip install 'provisioner[ssh]'`). Plain `tcp://` is
refused unless the address is loopback, or the host says `insecure_plain_tcp` (labs), which
logs a warning every time a client is built. unix:// and npipe:// are local.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.tls

from provisioner.runtime.errors import EngineRefused, translate_docker_errors

log = logging.getLogger(__name__)

DOCKER_API_VERSION = "1.41"  # Docker 20.10; later engines still speak it
TLS_OPTIONS = "--tls-ca, --tls-cert and --tls-key (or PROVISIONER_HOSTS__<NAME>__TLS_CA/_CERT/_KEY)"


@dataclass(frozen=True)
class EngineTLS:
    """Paths of the CA that signed the engine's certificate, and of our client certificate and key."""

    ca: str
    cert: str
    key: str

    @classmethod
    def of(cls, ca: str | None, cert: str | None, key: str | None, *, where: str) -> EngineTLS | None:
        """All three or none; one or two given is an error naming what is missing."""
        given = {"ca": ca, "cert": cert, "key": key}
        if not any(given.values()):
            return None
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise EngineRefused(
                f"{where}: TLS needs a CA, a certificate and a key; missing {', '.join(missing)}"
            )
        return cls(str(ca), str(cert), str(key))

    def config(self) -> docker.tls.TLSConfig:
        for path in (self.ca, self.cert, self.key):
            if not Path(path).is_file():
                raise EngineRefused(f"TLS file {path} does not exist or is not a file")
        return docker.tls.TLSConfig(client_cert=(self.cert, self.key), ca_cert=self.ca, verify=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:  # a name: loopback only when every address it resolves to is
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        except OSError:
            return False
        return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_engine_url(
    url: str, *, tls: EngineTLS | None = None, insecure_plain_tcp: bool = False, where: str = "engine"
) -> None:
    """Refuse (EngineRefused) what engine_client would refuse, without connecting."""
    scheme = urlsplit(url).scheme
    if scheme in ("unix", "npipe", "fd"):
        return
    if scheme == "ssh":
        if find_spec("paramiko") is None:
            raise EngineRefused(f"{where}: {url} needs paramiko: pip install 'provisioner[ssh]'")
        return
    if scheme not in ("tcp", "https", "http"):
        raise EngineRefused(f"{where}: {url}: unknown scheme (tcp://, ssh:// or unix://)")
    if tls is not None or insecure_plain_tcp:
        return
    host = urlsplit(url).hostname or ""
    if not _is_loopback(host):
        raise EngineRefused(
            f"{where}: {url} is plain TCP to {host}: whoever reaches it is root on that host. "
            f"Give {TLS_OPTIONS}, use ssh://user@{host}, or --insecure-plain-tcp (labs only)"
        )


def engine_client(
    url: str | None,
    *,
    tls: EngineTLS | None = None,
    insecure_plain_tcp: bool = False,
    where: str = "engine",
    **options: Any,
) -> docker.DockerClient:
    """A client for `url` (None: DOCKER_HOST or the local socket, as docker.from_env)."""
    if url is None:
        with translate_docker_errors():
            return docker.from_env(**options)
    check_engine_url(url, tls=tls, insecure_plain_tcp=insecure_plain_tcp, where=where)
    if tls is None and insecure_plain_tcp and urlsplit(url).scheme in ("tcp", "http"):
        log.warning(
            "%s: %s is plain TCP without TLS (insecure_plain_tcp): anyone on the path is root there",
            where,
            url,
        )
    if tls is not None:  # asking the engine its version first would bypass the CA below
        options.setdefault("version", DOCKER_API_VERSION)
    with translate_docker_errors():
        client = docker.DockerClient(
            base_url=url,
            tls=tls.config() if tls is not None else False,
            use_ssh_client=False,
            **options,
        )
    if tls is not None:
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE replace a session's CA (psf/requests#3829):
        # the engine's certificate is checked against the host's CA and nothing else.
        client.api.trust_env = False
    return client
