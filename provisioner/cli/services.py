"""`provisioner sim` and `watch`: the long-running services (the provider simulator, the code watcher)."""

from __future__ import annotations

import enum
import threading
from typing import Annotated

import typer

from provisioner.cli.common import Provider, console, err, load_deps, load_settings
from provisioner.simulator.dialects import NAMES as DIALECT_NAMES

Dialect = enum.StrEnum("Dialect", {name: name for name in DIALECT_NAMES})


def sim(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (all three protocols and /_sim/)")] = 8800,
    key: Annotated[list[str] | None, typer.Option(help="Accepted API key (repeatable)")] = None,
    sms_delay: Annotated[
        float | None, typer.Option(help="Seconds until each SMS arrives (default: on demand)")
    ] = None,
    dialect: Annotated[
        Dialect,
        typer.Option(help="SMS-Activate dialect the simulator speaks"),
    ] = Dialect.classic,
    webhook: Annotated[
        list[str] | None,
        typer.Option(help="PROTOCOL=URL: POST each SMS of sms_activate or onlinesim there (repeatable)"),
    ] = None,
) -> None:
    """Run the SMS provider simulator (all three protocols on one port)."""
    from provisioner.simulator.server import main as simulator_main

    args = ["--host", host, "--port", str(port), "--dialect", dialect]
    for k in key or ["demo-key"]:
        args += ["--key", k]
    if sms_delay is not None:
        args += ["--sms-delay", str(sms_delay)]
    for spec in webhook or []:
        args += ["--webhook", spec]
    simulator_main(args)


def watch(
    provider: Annotated[
        list[Provider] | None,
        typer.Option("--provider", "-p", help="Provider to watch (default: every configured one)"),
    ] = None,
) -> None:
    """Run the code watcher: poll each provider account once for all waiting numbers, record codes."""
    import logging
    import signal

    settings = load_settings()
    from provisioner.watcher import idle_without_providers
    from provisioner.watcher import watch as run_watch

    configured = settings.providers.configured_names()
    names = provider or configured
    missing = [name for name in names if name not in configured]
    if missing:  # asked for by name: a mistake to report, not a service to keep up
        err.print(
            f"[red]not configured: {', '.join(missing)} (set PROVISIONER_PROVIDERS__<NAME>__API_KEY)[/red]"
        )
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per provider request is noise here
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if not names:
        idle_without_providers(settings.providers.order, stop)
        return
    console.print(f"code watcher for {', '.join(names)} (Ctrl-C to stop)")
    run_watch(load_deps(), names, stop)


def executor(
    pool: Annotated[str, typer.Option(help="The work pool whose provision runs it executes")] = "",
    limit: Annotated[int, typer.Option(min=1, help="The most flow runs it executes at once")] = 100,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between reads of the pool")] = 0.5,
) -> None:
    """Run provision flow runs of the executor work pool in threads of this process (no process per run)."""
    import logging
    import signal

    from prefect.settings import get_current_settings

    from provisioner.prefect_api.names import EXECUTOR_POOL

    if not get_current_settings().api.url:  # else Prefect would start a throwaway server of its own
        err.print(
            "[red]PREFECT_API_URL is not set: point it at the Prefect server whose runs to execute[/red]"
        )
        raise typer.Exit(2)
    load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from flows.provision import provision_session
    from provisioner.executor import Executor

    deps = load_deps()
    deps.runtime  # noqa: B018 - built once here, shared by the runs' threads
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner = Executor(
        {provision_session.name: provision_session}, pool=pool or EXECUTOR_POOL, limit=limit, poll_s=poll
    )
    console.print(f"executor {runner.name} on work pool {runner.pool}, up to {limit} runs at once")
    runner.serve(stop)
