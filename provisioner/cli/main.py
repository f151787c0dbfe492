"""The `provisioner` command: provision, list and release sessions, run the simulator, the demo."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from provisioner.cli.catalog import catalog as catalog_command
from provisioner.cli.clients import clients_app
from provisioner.cli.hosts import hosts_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from provisioner.settings.version import VERSION

        console.print(f"provisioner {VERSION}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit"),
    ] = None,
) -> None:
    """Provision, list and release sessions, run the simulator, the demo."""


def _settings():
    from provisioner.settings import SettingsError, get_settings

    try:
        return get_settings()
    except SettingsError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _deps():
    """The process's Deps; a database of another deployment (or none yet) is a clear exit."""
    from provisioner.steps.deps import get_deps
    from provisioner.store.identity import IdentityError

    try:
        return get_deps()
    except IdentityError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _quiet_prefect(verbose: bool) -> None:
    # No telemetry: this machine may have no route out, and the CLI should not try.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


class EventPrinter(threading.Thread):
    """Prints a session's state changes as they are committed, while the flow runs."""

    def __init__(self, session_id: str) -> None:
        super().__init__(daemon=True)
        self.session_id = session_id
        self.seen = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.flush()
            self.done.wait(0.3)

    def flush(self) -> None:
        from provisioner.store import get_sessionmaker
        from provisioner.store import repository as repo

        with get_sessionmaker()() as db:
            events = repo.recent_events(db, self.session_id, limit=500)
        for event in events[self.seen :]:
            arrow = (
                f"{event.from_state} -> {event.to_state}"
                if event.from_state != event.to_state
                else event.to_state
            )
            console.print(f"  [dim]{event.at:%H:%M:%S}[/dim] [bold]{arrow:32}[/bold] {event.reason}")
        self.seen = max(self.seen, len(events))

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=2)
        self.flush()


def run_provision(request, *, session_id: str | None = None) -> int:
    """Run the provision flow in this process, printing each step; returns an exit code."""
    from flows.provision import ProvisionResult, provision_session
    from provisioner.store import get_sessionmaker, new_session_id
    from provisioner.store import repository as repo

    sid = session_id or new_session_id()
    console.print(f"provisioning session [bold]{sid}[/bold]")
    printer = EventPrinter(sid)
    printer.start()
    try:
        state = provision_session(request=request, session_id=sid, return_state=True)
    finally:
        printer.stop()
    with get_sessionmaker()() as db:
        session = repo.find_session(db, sid)
    if state.is_completed():
        result = state.result()
        if isinstance(result, ProvisionResult):
            console.print(f"\n[green]session {sid} {result.state}[/green]")
            if result.stream_url:
                console.print(f"stream URL: [link={result.stream_url}]{result.stream_url}[/link] (gateway)")
            console.print(f"phone:      {result.phone} ({result.provider})")
            console.print(f"code:       [bold]{result.code}[/bold]")
            return 0
    reason = (session.last_error if session else None) or state.message
    err.print(f"\n[red]session {sid} {session.state if session else 'not created'}: {reason}[/red]")
    return 1


_OPTION = {"device_profile": "profile", "providers": "provider"}


@app.command()
def provision(
    service: Annotated[
        str | None,
        typer.Option(
            help="Service: telegram, whatsapp, google, ... (or <provider>:<code>, e.g. sms_activate:tg)"
        ),
    ] = None,
    country: Annotated[
        str | None, typer.Option(help="Country, ISO 3166 alpha-2: RU, KZ, GB, ... (or <provider>:<code>)")
    ] = None,
    provider: Annotated[
        list[str] | None, typer.Option("--provider", "-p", help="Provider to try (repeat for fallback order)")
    ] = None,
    max_price: Annotated[
        str | None, typer.Option(help="Highest price to pay, with its currency: '0.50 USD'")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Device image profile")] = None,
    code_timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for the code per number")
    ] = None,
    attempts: Annotated[int | None, typer.Option(help="Numbers to try")] = None,
    ttl: Annotated[float | None, typer.Option(help="Seconds the session stays live")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Seconds a verified session may go unused before it is released")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs")] = False,
) -> None:
    """Provision a session: rent a number, start the device and its stream, wait for the code."""
    _quiet_prefect(verbose)
    settings = _settings()
    from pydantic import ValidationError

    from provisioner.steps.checks import InvalidRequest, validate_request
    from provisioner.steps.numbers import NoProviderConfigured
    from provisioner.steps.request import ProvisionRequest

    if not settings.providers.configured_names():
        err.print(
            f"[red]{NoProviderConfigured()}[/red]\nFor a local try-out, run the simulator (`provisioner sim`) and point a provider at it, or run scripts/demo."
        )
        raise typer.Exit(2)
    try:
        request = ProvisionRequest(
            service=service,
            country=country,
            providers=provider or None,
            max_price=max_price,
            device_profile=profile,
            code_timeout_s=code_timeout,
            number_attempts=attempts,
            ttl_s=ttl,
            idle_timeout_s=idle_timeout,
        )
    except ValidationError as exc:
        err.print(f"[red]invalid options:[/red] {exc}")
        raise typer.Exit(2) from None
    try:  # before any run starts: nothing is bought for a request that cannot be served
        validate_request(request, settings)
    except InvalidRequest as exc:
        for problem in exc.problems:
            err.print(f"[red]invalid --{_OPTION.get(problem.field, problem.field)}:[/red] {problem.message}")
        raise typer.Exit(2) from None
    raise typer.Exit(run_provision(request))


@app.command()
def sessions(
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts")] = False,
) -> None:
    """List sessions, newest first (ids are never shortened: copy them into `release`)."""
    _settings()
    from provisioner.steps.deps import get_deps
    from provisioner.steps.streams import gateway_stream_url
    from provisioner.store import LIVE, State, get_sessionmaker
    from provisioner.store import leases as lease_repo
    from provisioner.store import repository as repo
    from tasks.publish import mask_phone

    deps = get_deps()
    with get_sessionmaker()() as db:
        rows = [
            {
                "id": s.id,
                "state": s.state,
                "service": s.service,
                "country": s.country,
                "provider": s.provider,
                "phone": mask_phone(s.phone_number) if s.phone_number else None,
                "created_at": s.created_at.isoformat(),
                "expires_at": s.expires_at.isoformat() if s.expires_at else None,
                # Through the gateway, only while the session is live; never a published port.
                "stream_url": gateway_stream_url(deps, s.id)
                if s.stream_url and State(s.state) in LIVE
                else None,
                "last_error": s.last_error,
            }
            for s in repo.list_sessions(db, limit=limit)
        ]
        flagged = len(lease_repo.leases_needing_attention(db))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = _table("id", "state", "service", "provider", "phone", "created", "stream URL", "last error")
    for r in rows:
        table.add_row(
            r["id"],
            r["state"],
            f"{r['service']}/{r['country']}",
            r["provider"] or "-",
            r["phone"] or "-",
            r["created_at"][:19].replace("T", " "),
            r["stream_url"] or "-",
            (r["last_error"] or "")[:60],
        )
    console.print(table)
    if flagged:
        err.print(f"[yellow]{flagged} number(s) need a person: provisioner leases --attention[/yellow]")


def _table(first: str, *others: str, whole: tuple[str, ...] = ()) -> Table:
    """A table whose first column (an id) and ``whole`` columns are never cut or wrapped; the
    others fold, never elide."""
    table = Table(Column(first, no_wrap=True, min_width=12))
    for name in others:
        if name in whole:
            table.add_column(name, no_wrap=True)
        else:
            table.add_column(name, overflow="fold")
    return table


@app.command()
def leases(
    attention: Annotated[
        bool,
        typer.Option(
            "--attention", help="Only numbers that need a person (needs_attention, or unknown and flagged)"
        ),
    ] = False,
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts")] = False,
) -> None:
    """List rented numbers (leases), newest first; --attention: those a person must look at."""
    _settings()
    from provisioner.store import get_sessionmaker
    from provisioner.store import leases as lease_repo
    from tasks.publish import mask_phone

    with get_sessionmaker()() as db:
        if attention:
            found = lease_repo.leases_needing_attention(db, limit=limit)
        else:
            found = lease_repo.list_leases(db, limit=limit)
        rows = [
            {
                "id": x.id,
                "session_id": x.session_id,
                "provider": x.provider,
                "activation_id": x.activation_id,
                "phone": mask_phone(x.phone) if x.phone else None,
                "price": str(x.price) if x.price is not None else None,
                "currency": x.currency,
                "outcome": x.outcome,
                "provider_status": x.provider_status,
                "retries": x.retries,
                "attention": x.attention,
                "requested_at": x.requested_at.isoformat(),
            }
            for x in found
        ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if attention and not rows:
        console.print("no lease needs attention")
        return
    columns = ["lease", "provider", "activation", "price", "outcome", "requested"]
    table = _table("session", *columns, *(["why"] if attention else []), whole=("outcome",))
    for r in rows:
        cells = [
            r["session_id"],
            str(r["id"]),
            r["provider"],
            r["activation_id"] or "-",
            f"{r['price']} {r['currency'] or ''}".strip() if r["price"] else "-",
            r["outcome"],
            r["requested_at"][:19].replace("T", " "),
        ]
        table.add_row(*cells, *([r["attention"] or r["provider_status"] or ""] if attention else []))
    console.print(table)


@app.command()
def reconcile(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the actions without doing them")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs")] = False,
) -> None:
    """Run one reconciliation pass now (in this process) and print what it did."""
    _quiet_prefect(verbose)
    _settings()
    from flows.reconcile import reconcile_sessions

    state = reconcile_sessions(dry_run=dry_run, return_state=True)
    if not state.is_completed():
        err.print(f"[red]reconcile failed: {state.message}[/red]")
        raise typer.Exit(1)
    summary = state.result()
    if summary.actions:
        table = _table("action", "target", "reason", "result")
        for row in summary.actions:
            table.add_row(row["action"], row["target"], row["reason"], row["result"])
        console.print(table)
    console.print(summary.message)
    raise typer.Exit(1 if summary.failed or not summary.ran else 0)


@app.command()
def deploy(
    heartbeat_timeout: Annotated[
        float, typer.Option(help="Seconds without a flow run heartbeat before the run is marked Crashed")
    ] = 90.0,
) -> None:
    """Create the work pool, the deployments of prefect.yaml and the automations (idempotent)."""
    from prefect.settings import get_current_settings

    from provisioner.cli.deploy import DeployError
    from provisioner.cli.deploy import deploy as run_deploy
    from provisioner.steps.request import FormSettings
    from provisioner.steps.spend import NO_CEILING

    if FormSettings().spend.max_price is None:
        err.print(f"[yellow]warning: {NO_CEILING}[/yellow]")
    if not get_current_settings().api.url:
        err.print("[red]PREFECT_API_URL is not set: point it at the Prefect server to deploy to[/red]")
        raise typer.Exit(2)
    try:
        report = run_deploy(heartbeat_timeout_s=heartbeat_timeout)
    except DeployError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"work pool provisioner-process: {report.work_pool}")
    console.print(f"deployments: {report.deployments}")
    console.print(f"automation (crash runs whose heartbeats stop): {report.automation}")
    console.print(f"hosts' work queues: {report.host_queues}")


@app.command()
def release(
    session_id: str,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs")] = False,
) -> None:
    """Release a session: remove its containers, close its number."""
    import re

    from provisioner.store import SESSION_ID_PATTERN

    if not re.match(SESSION_ID_PATTERN, session_id):
        err.print(f"[red]{session_id!r} is not a session id (12 lowercase letters and digits)[/red]")
        raise typer.Exit(2)
    _quiet_prefect(verbose)
    _settings()
    from flows.release import release_session

    state = release_session(session_id=session_id, return_state=True)
    if state.is_completed():
        console.print(state.result())
        return
    err.print(f"[red]{state.message}[/red]")
    raise typer.Exit(1)


@app.command()
def sim(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (all three protocols and /_sim/)")] = 8800,
    key: Annotated[list[str] | None, typer.Option(help="Accepted API key (repeatable)")] = None,
    sms_delay: Annotated[
        float | None, typer.Option(help="Seconds until each SMS arrives (default: on demand)")
    ] = None,
    dialect: Annotated[
        str,
        typer.Option(help="SMS-Activate dialect: classic, status-codes, price-map, service-prices, auction"),
    ] = "classic",
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


@app.command()
def watch(
    provider: Annotated[
        list[str] | None,
        typer.Option("--provider", "-p", help="Provider to watch (default: every configured one)"),
    ] = None,
) -> None:
    """Run the code watcher: poll each provider account once for all waiting numbers, record codes."""
    import logging
    import signal

    settings = _settings()
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
    run_watch(_deps(), names, stop)


@app.command()
def code(
    session_id: str,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the new code (0: do not wait)")] = 120.0,
) -> None:
    """Ask for another code on a live session's number, then wait for it and print it."""
    import re

    from provisioner.store import SESSION_ID_PATTERN

    if not re.match(SESSION_ID_PATTERN, session_id):
        err.print(f"[red]{session_id!r} is not a session id (12 lowercase letters and digits)[/red]")
        raise typer.Exit(2)
    _settings()
    from providers.errors import ProviderError
    from provisioner.steps.codes import AnotherCodeRefused, request_another_code, wait_for_code
    from provisioner.store.repository import SessionNotFound

    deps = _deps()
    try:
        lease_id = request_another_code(deps, session_id, actor="cli")
    except (SessionNotFound, AnotherCodeRefused, ProviderError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"asked for another code on session {session_id}")
    if wait <= 0:
        return
    result = wait_for_code(deps, session_id, lease_id, timeout_s=wait, actor="cli")
    if result.code is None:
        err.print(f"[red]{result.reason}[/red]")
        raise typer.Exit(1)
    console.print(f"code:       [bold]{result.code}[/bold]")


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest revision and record the deployment identity.

    The first migrate names the deployment PROVISIONER_INSTANCE_ID, or a generated id when unset;
    every later process runs as that id."""
    settings = _settings()
    from provisioner.store.identity import IdentityError
    from provisioner.store.migrate import upgrade

    try:
        instance_id = upgrade(settings.database.url, instance_id=settings.instance_id)
    except IdentityError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"database migrated to head; deployment {instance_id}")


@app.command()
def doctor() -> None:
    """Check every piece a deployment needs, one line each with a fix; exits 1 naming the first
    broken piece (the database, the Prefect API, deployments, a worker, Docker, each provider's
    key, gateway auth, webhooks)."""
    settings = _settings()
    from provisioner.cli.doctor import run_checks

    broken = None
    for check in run_checks(settings):
        if check.ok:
            console.print(f"[green]ok  [/green] {check.piece:18} {check.detail}")
            continue
        err.print(f"[red]FAIL[/red] {check.piece:18} {check.detail}\n     {'':18} fix: {check.fix}")
        broken = broken or check.piece
    if broken:
        err.print(f"[red]doctor: {broken} is broken[/red]")
        raise typer.Exit(1)
    console.print("doctor: everything answers")


@app.command()
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
    _quiet_prefect(verbose)
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
    from provisioner.settings import get_settings

    get_settings.cache_clear()
    settings = _settings()
    from provisioner.store.migrate import upgrade

    upgrade(settings.database.url)
    console.print(
        f"simulator on {simulator.base_urls['sms_activate'].split('/stubs')[0]} (code after {sms_delay:g} s)"
    )
    env_file = Path(".env")
    if not env_file.exists():
        env_file.write_text(f"PROVISIONER_DATABASE__URL={settings.database.url}\n")
        console.print(
            "wrote .env with the local database URL, so `provisioner sessions` and `release` find it"
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
            "\nto see the device's screen, serve the gateway (`.venv/bin/python -m provisioner.gateway`)"
            " and open the stream URL; `provisioner release <id>` ends the session"
        )
    raise typer.Exit(code)


app.command(name="catalog")(catalog_command)
app.add_typer(hosts_app, name="hosts")
app.add_typer(clients_app, name="clients")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
