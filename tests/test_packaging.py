"""The built wheel adds one namespace to a worker's Python environment, and carries every package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CARD_FOLDERS = {"flows", "tasks", "providers"}  # fixed at the repository top by the design card


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("provisioner-*.whl")
    return zipfile.ZipFile(path)


def test_top_level_is_one_namespace_plus_the_card_folders(wheel: zipfile.ZipFile) -> None:
    (top,) = [n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt")]
    names = set(wheel.read(top).decode().split())
    assert "provisioner" in names
    assert names - {"provisioner"} <= CARD_FOLDERS


def test_every_package_and_data_file_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    shipped = set(wheel.namelist())
    packages = [
        p.parent.relative_to(ROOT).as_posix()
        for top in ("provisioner", *CARD_FOLDERS)
        for p in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in p.parts
    ]
    missing = [p for p in packages if f"{p}/__init__.py" not in shipped]
    assert missing == []
    assert "provisioner/runtime/profiles.yaml" in shipped
    assert "provisioner/store/migrations/versions/0001_initial.py" in shipped
    assert not any(n.startswith("tests/") for n in shipped)
