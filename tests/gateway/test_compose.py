"""docker-compose.yml as the compose tool reads it: valid, secrets required, startup order declared."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"


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
        env_file.write_text("POSTGRES_PASSWORD=s3cretpw\nPROVISIONER_GATEWAY__TOKEN=gwtoken\n")
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
            "gateway",
            "simulator",
        }
        assert services["postgres"]["image"] == "postgres:16"
        assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
        assert services["prefect-server"]["image"] == "provisioner/app:latest"
        assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
            "postgresql+asyncpg://provisioner:s3cretpw@postgres:5432/"
        )
        assert services["migrate"]["command"] == ["python", "-m", "store.migrate"]
        assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
        worker = services["worker"]
        assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"
        assert any("/var/run/docker.sock" in str(v) for v in worker["volumes"])
        assert "provisioner-process" in worker["command"]
        gateway = services["gateway"]
        assert gateway["environment"]["PROVISIONER_GATEWAY__TOKEN"] == "gwtoken"
        assert "s3cretpw" in gateway["environment"]["PROVISIONER_DATABASE__URL"]
        for name in ("migrate", "prefect-server", "worker", "gateway", "simulator"):
            assert services[name]["build"]["dockerfile"].endswith("images/app/Dockerfile"), name
        assert services["simulator"]["command"][:3] == ["python", "-m", "simulator.server"]
        assert services["simulator"]["profiles"] == ["sim"]
        sim_command = services["simulator"]["command"]
        assert float(sim_command[sim_command.index("--balance") + 1]) >= 10000
        assert all("profiles" not in s for n, s in services.items() if n != "simulator")
        assert "pgdata" in config["volumes"]

    def test_missing_password_is_refused_with_the_message(self, compose, tmp_path) -> None:
        env_file = tmp_path / ".env"
        env_file.write_text("# nothing\n")
        result = run_config(compose, env_file)
        assert result.returncode != 0
        assert "set POSTGRES_PASSWORD in .env" in result.stderr
