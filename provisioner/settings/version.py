"""The one version string of provisioner, shown by the CLI, the gateway, flow logs and deployments."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _version() -> str:
    # A checkout's pyproject.toml wins over installed metadata: an editable install keeps the
    # version it was installed with.
    if _PYPROJECT.is_file():
        return tomllib.loads(_PYPROJECT.read_text())["project"]["version"]
    try:
        return metadata.version("provisioner")
    except metadata.PackageNotFoundError:  # pragma: no cover - neither installed nor a checkout
        return "0+unknown"


VERSION = _version()


if __name__ == "__main__":  # `python -m settings.version`: prefect.yaml's deployment version
    print(VERSION)
