"""`provisioner migrate`, `deploy`, `reconcile` and `doctor`: set up the database and Prefect,
run a reconcile pass, check a deployment."""

from __future__ import annotations

from typing import Annotated

import typer

from provisioner.cli.common import console, err, load_settings, new_table, quiet_prefect


def reconcile(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the actions without doing them")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs")] = False,
) -> None:
    """Run one reconciliation pass now (in this process) and print what it did."""
    quiet_prefect(verbose)
    load_settings()
    from flows.reconcile import reconcile_sessions

    state = reconcile_sessions(dry_run=dry_run, return_state=True)
    if not state.is_completed():
        err.print(f"[red]reconcile failed: {state.message}[/red]")
        raise typer.Exit(1)
    summary = state.result()
    if summary.actions:
        table = new_table("action", "target", "reason", "result")
        for row in summary.actions:
            table.add_row(row["action"], row["target"], row["reason"], row["result"])
        console.print(table)
    console.print(summary.message)
    raise typer.Exit(1 if summary.failed or not summary.ran else 0)


def deploy(
    heartbeat_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds without a flow run heartbeat (or none since Running) before it is Crashed"
        ),
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
    console.print(f"work pool provisioner-executor: {report.executor_pool}")
    console.print(f"deployments: {report.deployments}")
    console.print(f"automations (crash runs whose heartbeats stop, or never start): {report.automation}")
    console.print(f"hosts' work queues: {report.host_queues}")
    console.print(f"automation (provider balance low, example): {report.balance_automation}")


def migrate() -> None:
    """Bring the database schema to the newest revision and record the deployment identity.

    The first migrate names the deployment PROVISIONER_INSTANCE_ID, or a generated id when unset;
    every later process runs as that id."""
    settings = load_settings()
    from provisioner.store.identity import IdentityError
    from provisioner.store.migrate import upgrade

    try:
        instance_id = upgrade(settings.database.url, instance_id=settings.instance_id)
    except IdentityError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"database migrated to head; deployment {instance_id}")


def doctor() -> None:
    """Check every piece a deployment needs, one line each with a fix; exits 1 naming the first
    broken piece (the database, the Prefect API, deployments, a worker, Docker, each provider's
    key, gateway auth, webhooks)."""
    settings = load_settings()
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
