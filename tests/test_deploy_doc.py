"""docs/deploy.md's "One machine, step by step", run as written: its shell blocks, in order, on a
fresh PostgreSQL cluster (pg_createcluster) on free non-default ports, in a copy of the checkout.
Each block is preceded by `<!-- deploy-step: KIND ... -->`: `vars` (run, then the test's own
ports and names), `run` (must succeed), `serve [URL]` (started in the background; URL must
answer), `skip REASON`. Then a session is provisioned through the gateway the page set up (its
provider pointed at the simulator as the page says), verified and released."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.harness.services import free_port
from tests.plugins.docker_engine import TEST_NETWORK, new_test_instance_id
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "deploy.md"
SECTION = "## One machine, step by step"
STEP = re.compile(r"<!-- deploy-step: (\w+)\s*(.*?)\s*-->\s*\n\s*```bash\n(.*?)\n\s*```", re.S)

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("pg_createcluster"), reason="root and pg_createcluster"
    ),
]


def steps() -> list[tuple[str, str, str]]:
    """(kind, argument, commands) of every marked block of the section, in order."""
    text = PAGE.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = [(kind, arg, textwrap.dedent(body)) for kind, arg, body in STEP.findall(text)]
    unmarked = text.count("```bash") - len(found)
    assert unmarked == 0, f"{unmarked} bash block(s) of the section have no deploy-step comment"
    return found


def script(overrides: dict[str, str], env_extra: str, logs: Path, pids: Path) -> str:
    lines = [
        "set -euo pipefail",
        'wait_url() { timeout 120 bash -c "until curl -sf -o /dev/null \\"$1\\"; do sleep 0.5; done" '
        '|| { echo "no answer from $1" >&2; exit 1; }; }',
    ]
    for n, (kind, arg, body) in enumerate(steps()):
        lines.append(f"echo '==> step {n}: {kind}'")
        if kind == "vars":
            lines += [body, *(f"{k}={v}" for k, v in overrides.items())]
        elif kind == "run":
            lines.append(body)
            if body.startswith("cat > .env"):
                lines.append(f"cat >> .env <<'EOF'\n{env_extra}EOF")
        elif kind == "serve":
            (command,) = [line for line in body.splitlines() if line.strip()]
            lines.append(f'setsid {command} > "{logs}/step{n}.log" 2>&1 < /dev/null & echo $! >> "{pids}"')
            if arg:
                lines.append(f'wait_url "{arg}"')
        else:
            assert kind == "skip", kind
    return "\n".join(lines) + "\n"


def checkout_copy(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(
        ".git", ".venv", ".local", ".env", "wheelhouse", "__pycache__", "*.egg-info"
    )
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def stop(pids: Path) -> None:
    if not pids.exists():
        return
    for pid in [int(p) for p in pids.read_text().split()]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for pid in [int(p) for p in pids.read_text().split()]:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_deploy_page_commands_work_as_written(tmp_path, docker_client, runtime_factory):
    work = checkout_copy(tmp_path / "checkout")
    logs, pids = tmp_path / "logs", tmp_path / "pids"
    logs.mkdir()
    instance_id = new_test_instance_id()
    pg_version = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: [int(x) for x in v.split(".")])[-1]
    ports = {name: free_port() for name in ("PGPORT", "PREFECT_PORT", "GATEWAY_PORT", "SIM_PORT")}
    overrides = {
        "PG_CLUSTER": f"provtest{instance_id[1:]}",
        **{k: str(v) for k, v in ports.items()},
        "PUBLIC_HOST": "localhost",  # not the API URL's host: PREFECT_UI_API_URL must say it
        "DB_PASSWORD": "pw" + instance_id,
        "GATEWAY_TOKEN": "tok-" + instance_id,
    }
    # What a shared test machine needs besides the page: its own containers and test network.
    env_extra = f"PROVISIONER_INSTANCE_ID={instance_id}\nPROVISIONER_DOCKER__NETWORK={TEST_NETWORK}\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PROVISIONER_"))}
    global_profile = Path.home() / ".prefect" / "profiles.toml"
    profile_before = global_profile.read_text() if global_profile.exists() else None
    (tmp_path / "steps.sh").write_text(script(overrides, env_extra, logs, pids))
    try:
        done = subprocess.run(
            ["bash", str(tmp_path / "steps.sh")],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.iterdir()))
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{tails}"
        created = json.loads(done.stdout.strip().splitlines()[-1])
        sid = created["session_id"]

        gateway = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
        auth = {"Authorization": f"Bearer {overrides['GATEWAY_TOKEN']}"}
        with httpx.Client(base_url=gateway, headers=auth, timeout=15, trust_env=False) as client:
            verified = wait_for(
                lambda: client.get(f"/sessions/{sid}").json()["state"] in ("verified", "failed", "cancelled"),
                timeout=240,
                interval=1,
            )
            session = client.get(f"/sessions/{sid}").json()
            assert verified and session["state"] == "verified", session
            assert client.get(f"/vnc/{sid}/vnc.html").status_code == 200
            assert client.delete(f"/sessions/{sid}").status_code == 202
            wait_for(
                lambda: client.get(f"/sessions/{sid}").json()["state"] == "released", timeout=120, interval=1
            )
        # The UI calls the API where PREFECT_UI_API_URL says, not 127.0.0.1:4200.
        ui = httpx.get(f"http://127.0.0.1:{ports['PREFECT_PORT']}/ui-settings", timeout=10, trust_env=False)
        assert ui.json()["api_url"] == f"http://localhost:{ports['PREFECT_PORT']}/api"
        wait_for(lambda: runtime_factory(instance_id).list_managed() == [], timeout=60)
        # Everything came from the checkout's .env: root's global Prefect profile is untouched.
        assert (global_profile.read_text() if global_profile.exists() else None) == profile_before
    finally:
        stop(pids)
        subprocess.run(
            ["pg_dropcluster", "--stop", pg_version, overrides["PG_CLUSTER"]], capture_output=True, timeout=60
        )
