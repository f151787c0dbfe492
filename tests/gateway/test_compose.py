"""docker-compose.yml as the compose tool reads it: valid, secrets required, startup order declared."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "deploy", "worker", "executor", "gateway", "watcher")


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) when present, else Debian's `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no compose tool: apt-get install docker-compose (or the docker compose plugin)")
    return command


def run_config(compose: list[str], env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD" and not k.startswith("PROVISIONER_")
    }
    return subprocess.run(
        [*compose, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *extra, "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


class TestCompose:
    def test_valid_with_secrets_and_startup_order(self, compose, tmp_path) -> None:
        env_file = tmp_path / ".env"
        env_file.write_text(
            f"PROVISIONER_ENV_FILE={env_file}\nPOSTGRES_PASSWORD=s3cretpw\nPROVISIONER_GATEWAY__TOKEN=gwtoken\n"
            "PREFECT_API_AUTH_STRING=admin:pf-login\n"
            "PROVISIONER_DEFAULTS__COUNTRY=KZ\nPROVISIONER_PROVIDERS__SMS_MAN__API_KEY=k-sms-man\n"
        )
        result = run_config(compose, env_file, "--profile", "sim")
        assert result.returncode == 0, result.stderr
        config = yaml.safe_load(result.stdout)
        services = config["services"]
        assert set(services) == {
            "postgres",
            "prefect-db",
            "migrate",
            "prefect-server",
            "deploy",
            "worker",
            "executor",
            "gateway",
            "watcher",
            "simulator",
        }
        assert services["postgres"]["image"] == "postgres:16"
        assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
        assert services["prefect-server"]["image"] == "provisioner/app:latest"
        assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
            "postgresql+asyncpg://provisioner:s3cretpw@postgres:5432/"
        )
        assert services["migrate"]["command"] == ["python", "-m", "provisioner.store.migrate"]
        assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
        worker = services["worker"]
        assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"
        assert any("/var/run/docker.sock" in str(v) for v in worker["volumes"])
        assert "provisioner-process" in worker["command"]
        executor = services["executor"]
        assert executor["command"][:2] == ["provisioner", "executor"]
        assert any("/var/run/docker.sock" in str(v) for v in executor["volumes"])
        assert executor["depends_on"]["deploy"]["condition"] == "service_completed_successfully"
        gateway = services["gateway"]
        assert gateway["environment"]["PROVISIONER_GATEWAY__TOKEN"] == "gwtoken"
        assert "s3cretpw" in gateway["environment"]["PROVISIONER_DATABASE__URL"]
        assert "volumes" not in gateway, "the gateway mounts no Docker socket (routes are in the database)"
        for name in ("migrate", "prefect-server", "worker", "gateway", "simulator"):
            assert services[name]["build"]["dockerfile"].endswith("images/app/Dockerfile"), name
        assert services["watcher"]["command"] == ["python", "-m", "provisioner.cli", "watch"]
        assert services["watcher"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services["simulator"]["command"][:3] == ["python", "-m", "provisioner.simulator.server"]
        assert services["simulator"]["profiles"] == ["sim"]
        sim_command = services["simulator"]["command"]
        assert float(sim_command[sim_command.index("--balance") + 1]) >= 10000
        assert all("profiles" not in s for n, s in services.items() if n != "simulator")
        assert "pgdata" in config["volumes"]
        # One file, the same names as everywhere else: every app service gets all of .env, deploy
        # included (the run form's defaults); nothing is renamed on the way.
        raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
        for name in APP_SERVICES:
            assert raw[name]["env_file"] == "${PROVISIONER_ENV_FILE:-.env}", name
            environment = services[name]["environment"]
            assert environment["PROVISIONER_DEFAULTS__COUNTRY"] == "KZ", name
            assert environment["PROVISIONER_PROVIDERS__SMS_MAN__API_KEY"] == "k-sms-man", name
            assert "s3cretpw" in environment["PROVISIONER_DATABASE__URL"], name
        assert "env_file" not in raw["prefect-server"] and "env_file" not in raw["postgres"]
        # Prefect's API is behind its login, and every client of it has the login.
        assert services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"] == "admin:pf-login"
        for name in APP_SERVICES:
            assert services[name]["environment"]["PREFECT_API_AUTH_STRING"] == "admin:pf-login", name

    def test_env_example_names_real_settings_and_starts_a_valid_config(self, compose, tmp_path) -> None:
        from provisioner.settings.docs import render

        example = (ROOT / ".env.example").read_text()
        names = set(re.findall(r"^#? ?(PROVISIONER_[A-Z0-9_]+)=", example, re.M)) - {"PROVISIONER_ENV_FILE"}
        documented = set(re.findall(r"`(PROVISIONER_[A-Z0-9_<>]+)`", render()))

        def generic(name: str) -> str:
            return re.sub(r"PROVIDERS__(SMS_MAN|ONLINESIM|SMS_ACTIVATE)__", "PROVIDERS__<NAME>__", name)

        unknown = sorted(n for n in names if n not in documented and generic(n) not in documented)
        assert names and unknown == [], f"not settings (docs/settings.md): {unknown}"
        env_file = tmp_path / ".env"
        env_file.write_text(example + f"PROVISIONER_ENV_FILE={env_file}\n")
        assert run_config(compose, env_file).returncode == 0

    def test_missing_password_is_refused_with_the_message(self, compose, tmp_path) -> None:
        env_file = tmp_path / ".env"
        env_file.write_text(f"PROVISIONER_ENV_FILE={env_file}\n")
        result = run_config(compose, env_file)
        assert result.returncode != 0
        assert "set POSTGRES_PASSWORD in .env" in result.stderr


@pytest.mark.compose
@pytest.mark.timeout(900)  # builds the app image, starts eight containers: 8 min on two busy cores
def test_compose_stack_provisions_through_the_gateway_and_releases(compose, docker_client, tmp_path) -> None:
    """The whole stack started for real: the app image (from the host-made wheelhouse), a
    PostgreSQL image built here (tests/compose/override.yml), the simulator profile. A session is
    provisioned and released through the gateway, then everything is torn down."""
    import secrets
    import time

    import httpx
    from websockets.sync.client import connect as ws_connect

    from tests.harness.services import free_port

    build = subprocess.run(
        [str(ROOT / "scripts" / "build-app-image")], capture_output=True, text=True, timeout=900
    )
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    pg = subprocess.run(
        ["docker", "build", "-q", "-t", "provisioner-test/postgres:15", str(ROOT / "tests/compose/postgres")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pg.returncode == 0, pg.stderr[-3000:]

    suffix = secrets.token_hex(3)
    instance, token = f"c{suffix}", secrets.token_hex(8)
    gateway_port = free_port()
    env_file = tmp_path / ".env"
    env_file.write_text(
        "\n".join(
            [
                f"POSTGRES_PASSWORD=pw{secrets.token_hex(6)}",
                f"PREFECT_API_AUTH_STRING=admin:{secrets.token_hex(8)}",
                f"PROVISIONER_ENV_FILE={env_file}",
                f"PROVISIONER_GATEWAY__TOKEN={token}",
                "PROVISIONER_PROVIDERS__SMS_ACTIVATE__API_KEY=demo-key",
                "PROVISIONER_PROVIDERS__SMS_ACTIVATE__BASE_URL=http://simulator:8800/stubs/handler_api.php",
                'PROVISIONER_PROVIDERS__ORDER=["sms_activate"]',
                "PROVISIONER_DEFAULTS__CODE_TIMEOUT_S=60",
                f"PROVISIONER_INSTANCE_ID={instance}",
                f"PROVISIONER_DOCKER__NETWORK=provisioner-{instance}",
                f"GATEWAY_PORT={gateway_port}",
                f"PREFECT_UI_PORT={free_port()}",
                f"PROVISIONER_GATEWAY__PUBLIC_URL=http://127.0.0.1:{gateway_port}",
            ]
        )
        + "\n"
    )
    stack = [
        *compose,
        "-p",
        f"provtest{suffix}",
        "--env-file",
        str(env_file),
        "-f",
        str(COMPOSE_FILE),
        "-f",
        str(ROOT / "tests/compose/override.yml"),
        "--profile",
        "sim",
    ]
    env = {
        k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD" and not k.startswith("PROVISIONER_")
    }

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*stack, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
        )

    def state(client: httpx.Client, sid: str, wanted: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            reply = client.get(f"/sessions/{sid}")
            if reply.status_code == 200:
                body = reply.json()
                if body["state"] == wanted:
                    return body
            time.sleep(1)
        pytest.fail(f"session {sid} never {wanted}: {body}\n{run('logs', '--tail', '40').stdout[-6000:]}")

    up = run("up", "-d", "--no-build")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{gateway_port}", headers=auth, timeout=30, trust_env=False
        ) as client:
            deadline = time.monotonic() + 240
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"gateway not ready\n{run('logs', '--tail', '40').stdout[-6000:]}")
                time.sleep(2)
            created = client.post("/sessions", json={})  # every default from .env
            assert created.status_code == 202, created.text
            sid = created.json()["session_id"]
            verified = state(client, sid, "verified", timeout=240)
            assert verified["code_received"] is True
            # The gateway container has no Docker socket, yet streams through the recorded route.
            (gateway,) = docker_client.containers.list(
                filters={
                    "label": [
                        f"com.docker.compose.project=provtest{suffix}",
                        "com.docker.compose.service=gateway",
                    ]
                }
            )
            assert gateway.attrs["Mounts"] == []
            assert client.get(f"/vnc/{sid}/vnc.html").status_code == 200
            ws_url = f"ws://127.0.0.1:{gateway_port}/vnc/{sid}/websockify"
            with ws_connect(ws_url, subprotocols=["binary"], additional_headers=auth, open_timeout=10) as ws:
                assert ws.recv(timeout=10)[:4] == b"RFB "
            assert client.delete(f"/sessions/{sid}").status_code == 202
            state(client, sid, "released", timeout=120)
        left = docker_client.containers.list(all=True, filters={"label": f"provisioner.instance={instance}"})
        assert left == []
    finally:
        down = run("down", "-v", "--remove-orphans", "-t", "5")
        for container in docker_client.containers.list(
            all=True, filters={"label": f"provisioner.instance={instance}"}
        ):
            container.remove(force=True, v=True)
        for network in docker_client.networks.list(names=[f"provisioner-{instance}"]):
            network.remove()
    assert down.returncode == 0, down.stderr[-3000:]
    assert (
        docker_client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project=provtest{suffix}"}
        )
        == []
    )
