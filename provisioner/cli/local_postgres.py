"""A throwaway PostgreSQL cluster from the installed server binaries, for tests and the demo.

initdb refuses to run as root, so as root the cluster is owned by the ``postgres`` user that
Debian's postgresql package creates, and its data directory must be one that user can reach:
``data_dir_for`` picks one (the checkout's own state directory when reachable, else a directory
named after the checkout under /var/lib/postgresql or /var/tmp) and says why.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def find_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise PostgresUnavailable(
        f"{name} not found: install the PostgreSQL server (apt-get install -y postgresql) "
        "or set PROVISIONER_TEST_DATABASE_URL to an existing server"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalPostgres:
    """A cluster in ``data_dir`` listening on 127.0.0.1:``port`` with trust auth."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    user: str = "provisioner"
    _run_as: str | None = None

    def __post_init__(self) -> None:
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable(
                    "running as root needs the 'postgres' system user (apt-get install postgresql)"
                ) from exc
            self._run_as = "postgres"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self._run_as, "--", *args] if self._run_as else list(args)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            shutil.chown(self.data_dir, self._run_as, self._run_as)
            os.chmod(self.data_dir, 0o700)
        subprocess.run(
            self._cmd(
                find_bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        if not self.initialized:
            self.init()
        log = self.data_dir / "server.log"
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        result = subprocess.run(
            self._cmd(
                find_bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {result.stderr.strip()}\n{tail}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise PostgresUnavailable(f"PostgreSQL did not listen on port {self.port}")

    def stop(self) -> None:
        subprocess.run(
            self._cmd(find_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"),
            capture_output=True,
        )

    def running(self) -> bool:
        result = subprocess.run(
            self._cmd(find_bin("pg_ctl"), "-D", str(self.data_dir), "status"), capture_output=True
        )
        return result.returncode == 0

    def running_port(self) -> int | None:
        """The port the cluster running in ``data_dir`` listens on (line 4 of its postmaster.pid),
        whoever started it: a port remembered elsewhere may be stale (the checkout was cloned
        again at the same path while its cluster, kept outside it, still runs)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)


SERVER_USER = "postgres"
FALLBACK_BASES = (Path("/var/lib/postgresql"), Path("/var/tmp"))


def reachable_by_server_user(directory: Path) -> bool:
    """Whether the ``postgres`` user can enter ``directory`` (every parent searchable)."""
    if os.geteuid() != 0:
        return True  # the cluster runs as ourselves
    result = subprocess.run(
        ["runuser", "-u", SERVER_USER, "--", "test", "-x", str(directory)], capture_output=True
    )
    return result.returncode == 0


def data_dir_for(state_dir: Path) -> tuple[Path, str | None]:
    """Where a cluster kept for ``state_dir`` lives, and why when it is not ``state_dir/postgres``.

    As root the cluster runs as ``postgres``, which cannot enter a checkout under a directory only
    root can enter (root's home, a ``mktemp -d``): then the data goes to
    ``/var/lib/postgresql/provisioner-<hash of state_dir>`` (or under /var/tmp), one per checkout.
    """
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if reachable_by_server_user(state_dir):
        return state_dir / "postgres", None
    name = "provisioner-" + hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
    for base in FALLBACK_BASES:
        if base.is_dir() and reachable_by_server_user(base):
            return base / name / "data", (
                f"the {SERVER_USER} user cannot enter {state_dir} (a parent directory is not "
                f"searchable by it), so the PostgreSQL data for this checkout is in {base / name}"
            )
    raise PostgresUnavailable(
        f"the {SERVER_USER} user cannot enter {state_dir} nor any of "
        f"{', '.join(map(str, FALLBACK_BASES))}: run from a checkout it can reach, or set "
        "PROVISIONER_DATABASE__URL to an existing server"
    )


def throwaway() -> LocalPostgres:
    """A new cluster in a fresh temporary directory (the caller starts and stops it).

    The directory is under the system's temporary directory unless the ``postgres`` user cannot
    enter it (a root-only TMPDIR), then under /var/tmp."""
    base = Path(tempfile.mkdtemp(prefix="provisioner-pg-"))
    if os.geteuid() == 0:
        os.chmod(base, 0o755)
        if not reachable_by_server_user(base):
            os.rmdir(base)
            base = Path(tempfile.mkdtemp(prefix="provisioner-pg-", dir="/var/tmp"))
            os.chmod(base, 0o755)
    return LocalPostgres(data_dir=base / "data")
