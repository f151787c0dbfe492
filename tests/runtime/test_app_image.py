"""The app image's build context (the repository root) carries no secrets, local state or caches.

A copy of the checkout's files plus the things a working checkout has (.env with a secret, .venv,
.git, .local, caches) is sent to the real engine by the legacy builder (`DOCKER_BUILDKIT=0 docker
build`, as on Docker 20.10) with a probe Dockerfile that copies the whole context; the probe
image's file list is what the app image would see with `COPY . .`.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import docker
import pytest

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
POISON = {
    ".env": "PROVISIONER_DATABASE__URL=postgresql+psycopg://u:leakedpw@db/x\n",
    ".env.local": "SMS_MAN_API_KEY=leakedkey\n",
    ".venv/bin/python": "",
    ".git/HEAD": "ref: refs/heads/main\n",
    ".local/postgres/PG_VERSION": "15\n",
    "provisioner/gateway/__pycache__/api.cpython-311.pyc": "",
    "provisioner/store/stray.pyc": "",
    ".pytest_cache/README.md": "",
    ".ruff_cache/CACHEDIR.TAG": "",
}


def _checkout_copy(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    for name, content in POISON.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(content)


def test_app_build_context_has_no_env_venv_git_or_caches(docker_client: docker.DockerClient, tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the file list comes from git")
    context = tmp_path / "context"
    _checkout_copy(context)
    probe = tmp_path / "Probe.Dockerfile"
    probe.write_text("FROM debian:bookworm-slim\nCOPY . /context\nRUN cd /context && find . > /listing\n")
    tag = f"provisioner-test/context-probe:{secrets.token_hex(4)}"
    built = subprocess.run(
        ["docker", "build", "-q", "-f", str(probe), "-t", tag, str(context)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DOCKER_BUILDKIT": "0"},
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    try:
        listing = docker_client.containers.run(tag, ["cat", "/listing"], remove=True).decode()
    finally:
        docker_client.images.remove(tag, force=True)
    files = {line.removeprefix("./") for line in listing.splitlines()}
    for needed in (
        "pyproject.toml",
        "provisioner/cli/main.py",
        "provisioner/store/migrations/versions/0001_initial.py",
    ):
        assert needed in files
    kept_out = {".env", ".env.local", ".venv", ".git", ".local", ".pytest_cache", ".ruff_cache"}
    leaked = sorted(
        f for f in files if f.split("/")[0] in kept_out or "__pycache__" in f or f.endswith(".pyc")
    )
    assert leaked == []
