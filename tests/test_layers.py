"""The layer contracts (import-linter, pyproject.toml) and the cycle check (scripts/check-imports)
pass on this checkout, and each fails on a tree that breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECK_IMPORTS = ROOT / "scripts" / "check-imports"


def _check_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_IMPORTS), str(root)], capture_output=True, text=True, timeout=60
    )


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_this_checkout_has_no_import_cycle() -> None:
    done = _check_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no import cycles" in done.stdout


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "provisioner/__init__.py": "",
            "provisioner/steps/__init__.py": "",
            "provisioner/steps/a.py": "from provisioner.steps.b import g\n\ndef f():\n    return g()\n",
            "provisioner/steps/b.py": "def g():\n    from provisioner.steps import a\n    return a\n",
        },
    )
    done = _check_imports(root)
    assert done.returncode == 1
    assert "provisioner.steps.a -> provisioner.steps.b" in done.stdout
    assert "provisioner.steps.b -> provisioner.steps.a" in done.stdout


def test_a_cycle_through_a_package_init_is_found(tmp_path: Path) -> None:
    """Importing providers.x runs providers/__init__ first: settings -> providers.x and
    providers/__init__ -> settings is a cycle Python meets at import time."""
    root = _tree(
        tmp_path,
        {
            "provisioner/__init__.py": "",
            "provisioner/settings.py": "from providers.canonical import NAMES\n",
            "providers/__init__.py": "from provisioner.settings import *\n",
            "providers/canonical.py": "NAMES = ()\n",
        },
    )
    done = _check_imports(root)
    assert done.returncode == 1
    assert "provisioner.settings -> providers" in done.stdout


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache", "--config", str(root / "pyproject.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={"PATH": str(lint.parent), "PYTHONPATH": str(root)},
    )


def test_the_layer_contracts_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_step_importing_a_task_breaks_the_layers(tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    for name in ("provisioner", "flows", "tasks", "providers"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    step = copy / "provisioner" / "steps" / "checks.py"
    step.write_text(step.read_text() + "\n\ndef _upward():\n    from tasks.checks import check_request\n")
    done = _lint_imports(copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "provisioner.steps.checks -> tasks.checks" in done.stdout
