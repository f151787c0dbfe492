"""`provisioner demo`: one session end to end on this machine: a local PostgreSQL, the simulator."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from provisioner.cli.common import console, err, load_settings, quiet_prefect
from provisioner.cli.provision import run_provision


def _env_keys(env_file: Path) -> set[str]:
    if not env_file.exists():
        return set()
    return {line.split("=", 1)[0].strip() for line in env_file.read_text().splitlines() if "=" in line}


def _remember_in_env(env_file: Path, key: str, value: str) -> None:
    """Append ``key=value`` to the .env file (created readable by its owner only)."""
    env_file.touch(mode=0o600, exist_ok=True)
    text = env_file.read_text()
    with env_file.open("a") as out:
        out.write(("" if not text or text.endswith("\n") else "\n") + f"{key}={value}\n")


def demo(
    state_dir: Annotated[Path, typer.Option(help="Where the local PostgreSQL cluster lives")] = Path(
        ".local"
    ),
    sms_delay: Annotated[float, typer.Option(help="Seconds until the simulator sends the code")] = 3.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs")] = False,
) -> None:
    """Provision one session end to end against the built-in provider simulator.

    Starts (or reuses) a local PostgreSQL cluster in STATE_DIR and the simulator in this process,
    configures the providers to use it for this run only, and provisions a session."""
    quiet_prefect(verbose)
    if not os.environ.get("PREFECT_API_URL"):
        # Prefect's temporary server keeps its SQLite file here, apart from any other Prefect use.
        os.environ.setdefault("PREFECT_HOME", str(state_dir.resolve() / "prefect"))
    from provisioner.cli.local_postgres import LocalPostgres, PostgresUnavailable, data_dir_for, free_port
    from provisioner.simulator.server import Simulator

    try:
        pg_dir, why_elsewhere = data_dir_for(state_dir)
    except PostgresUnavailable as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if why_elsewhere:
        console.print(why_elsewhere)
    port_file = state_dir.resolve() / "postgres.port"
    port = int(port_file.read_text()) if port_file.exists() else free_port()
    cluster = LocalPostgres(data_dir=pg_dir, port=port)
    if cluster.running():
        cluster.port = cluster.running_port() or port
    else:
        console.print(f"starting PostgreSQL in {pg_dir} on port {port}")
        cluster.start()
    port_file.write_text(str(cluster.port))
    url = cluster.create_database("provisioner")
    os.environ.setdefault("PROVISIONER_DATABASE__URL", url)
    simulator = Simulator(keys={"demo-key": 1000}, sms_delay_s=sms_delay).start()
    for name, base_url in simulator.base_urls.items():
        os.environ[f"PROVISIONER_PROVIDERS__{name.upper()}__API_KEY"] = "demo-key"
        os.environ[f"PROVISIONER_PROVIDERS__{name.upper()}__BASE_URL"] = base_url
    # A ceiling, as every deployment should have: the simulator sells at 10 RUB (sms_activate).
    os.environ.setdefault("PROVISIONER_SPEND__MAX_PRICE", "20 RUB")
    env_file = Path(".env")
    # The gateway starts only with a token (or a client); the session page link is signed with it.
    if not os.environ.get("PROVISIONER_GATEWAY__TOKEN") and "PROVISIONER_GATEWAY__TOKEN" not in _env_keys(
        env_file
    ):
        os.environ["PROVISIONER_GATEWAY__TOKEN"] = secrets.token_urlsafe(32)
        _remember_in_env(env_file, "PROVISIONER_GATEWAY__TOKEN", os.environ["PROVISIONER_GATEWAY__TOKEN"])
        console.print("wrote a gateway token to .env (the gateway's operator token; it signs session links)")
    from provisioner.settings import get_settings

    get_settings.cache_clear()
    settings = load_settings()
    from provisioner.store.migrate import upgrade

    upgrade(settings.database.url)
    console.print(
        f"simulator on {simulator.base_urls['sms_activate'].split('/stubs')[0]} (code after {sms_delay:g} s)"
    )
    if "PROVISIONER_DATABASE__URL" not in _env_keys(env_file):
        _remember_in_env(env_file, "PROVISIONER_DATABASE__URL", settings.database.url)
        console.print(
            "wrote the local database URL to .env, so `provisioner sessions`, `release` and the gateway find it"
        )
    from provisioner.steps.request import ProvisionRequest

    try:
        code = run_provision(
            ProvisionRequest(providers=["sms_activate"], code_timeout_s=60, number_attempts=2)
        )
    finally:
        simulator.stop()
    if code == 0:
        console.print(
            "\nto see the device's screen, the number and the code, serve the gateway"
            " (`.venv/bin/python -m provisioner.gateway`, it reads .env) and open the session page link;"
            " `provisioner release <id>` ends the session"
        )
    raise typer.Exit(code)
