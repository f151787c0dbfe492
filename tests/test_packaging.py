"""The wheel (and so the app image's install) carries every top-level package of the project."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_SHIPPED = {"tests"}  # development only: see the README's packaging paragraph


def test_every_top_level_package_is_in_the_wheel() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    missing = [p for p in packages if p not in NOT_SHIPPED and not any(fnmatch(p, pat) for pat in patterns)]
    assert missing == []
