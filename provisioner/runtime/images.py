"""Build the project's images from images/ without a registry.

`python -m runtime.images [IMAGES_DIR]` (what scripts/build-images runs) makes sure the base
image exists (pulled when a registry answers, otherwise bootstrapped with debootstrap and
imported), then builds each image whose Dockerfile context changed. A build is skipped when the
tagged image carries the same context hash label.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from provisioner.runtime.engines import engine_client
from provisioner.runtime.errors import RuntimeFailure, translate_docker_errors

log = logging.getLogger(__name__)

BASE_IMAGE = "debian:bookworm-slim"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
HASH_LABEL = "provisioner.context-hash"


@dataclass(frozen=True)
class ImageSpec:
    tag: str
    context: str  # directory name under images/


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("provisioner/device-stub:latest", "device-stub"),
    ImageSpec("provisioner/websockify:latest", "websockify"),
    ImageSpec("provisioner/netguard:latest", "netguard"),
)


def default_images_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "images"


def context_hash(context: Path) -> str:
    """A hash of every file's relative path, executable bit and content under a build context."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(path.relative_to(context).as_posix().encode())
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _has_image(client: docker.DockerClient, tag: str) -> docker.models.images.Image | None:
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def ensure_base_image(client: docker.DockerClient, tag: str = BASE_IMAGE) -> str:
    """Make `tag` exist locally: already there, pulled, or debootstrapped and imported."""
    if _has_image(client, tag):
        return "present"
    repository, _, version = tag.partition(":")
    try:
        client.images.pull(repository, tag=version or "latest")
        return "pulled"
    except docker.errors.APIError as exc:
        log.info("cannot pull %s (%s); bootstrapping it with debootstrap", tag, exc.explanation or exc)
    if shutil.which("debootstrap") is None:
        raise SystemExit(f"{tag} is missing, cannot be pulled, and debootstrap is not installed")
    suite = version.split("-")[0] or "bookworm"
    with tempfile.TemporaryDirectory(prefix="provisioner-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(root), DEBIAN_MIRROR],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # Slim it like the official image: no apt lists or caches.
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for child in (root / junk).glob("*"):
                if child.is_file():
                    child.unlink()
        subprocess.run(["tar", "-C", str(root), "-c", "-f", str(tarball), "."], check=True)
        client.api.import_image_from_file(str(tarball), repository=repository, tag=version or "latest")
    return "bootstrapped"


def build_image(
    client: docker.DockerClient, spec: ImageSpec, images_dir: Path, *, force: bool = False
) -> str:
    """Build one image unless its tagged version was built from the same context."""
    context = images_dir / spec.context
    wanted = context_hash(context)
    existing = _has_image(client, spec.tag)
    if existing is not None and not force and (existing.labels or {}).get(HASH_LABEL) == wanted:
        return "up to date"
    with translate_docker_errors():
        for chunk in client.api.build(
            path=str(context),
            tag=spec.tag,
            labels={HASH_LABEL: wanted},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        ):
            if "error" in chunk:
                raise SystemExit(f"building {spec.tag} failed: {chunk['error'].strip()}")
            line = chunk.get("stream", "").rstrip()
            if line:
                log.debug("%s", line)
    if existing is not None:
        # The old image lost its tag; drop it unless a container still uses it.
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(existing.id)
    return "built"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build-images", description=__doc__.splitlines()[0])
    parser.add_argument("images_dir", nargs="?", type=Path, default=default_images_dir())
    parser.add_argument("--force", action="store_true", help="rebuild even when the context is unchanged")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the build output")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)

    try:
        client = engine_client(None)
        with translate_docker_errors():
            client.ping()
    except RuntimeFailure as exc:
        print(f"build-images: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    print(f"{BASE_IMAGE}: {ensure_base_image(client)} ({time.monotonic() - started:.0f}s)")
    for spec in IMAGES:
        started = time.monotonic()
        print(
            f"{spec.tag}: {build_image(client, spec, args.images_dir, force=args.force)} "
            f"({time.monotonic() - started:.0f}s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
