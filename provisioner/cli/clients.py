"""`provisioner clients`: who may call the gateway (add, list, revoke)."""

from __future__ import annotations

import json
import re
from typing import Annotated

import typer
from rich.table import Table

from provisioner.cli.common import console, err, load_sessionmaker

clients_app = typer.Typer(
    add_completion=False,
    invoke_without_command=True,
    help="Who may call the gateway: list (default), add, revoke.",
)
_RATE = re.compile(r"^\s*(\d+)\s*/\s*min\s*$")


def parse_rate(text: str) -> int:
    """'30/min' -> 30."""
    match = _RATE.match(text)
    if not match or int(match.group(1)) < 1:
        raise typer.BadParameter(f"{text!r} is not a rate: write N/min, e.g. 30/min")
    return int(match.group(1))


def _row_json(row) -> dict:
    return {
        "name": row.name,
        "role": row.role,
        "max_sessions": row.max_sessions,
        "rate_per_min": row.rate_per_min,
        "created_at": row.created_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


@clients_app.callback()
def clients(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts")] = False,
) -> None:
    """List the clients: role, limits, created, revoked (never a token)."""
    if ctx.invoked_subcommand is None:
        _list(as_json)


@clients_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts")] = False,
) -> None:
    """List the clients: role, limits, created, revoked (never a token)."""
    _list(as_json)


def _list(as_json: bool) -> None:
    from provisioner.store import clients as clientrepo

    with load_sessionmaker()() as db:
        rows = [_row_json(r) for r in clientrepo.list_clients(db)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no clients: add one with `provisioner clients add NAME`")
        return
    table = Table("name", "role", "max sessions", "rate", "created", "revoked")
    for r in rows:
        table.add_row(
            r["name"],
            r["role"],
            str(r["max_sessions"] or "-"),
            f"{r['rate_per_min']}/min" if r["rate_per_min"] else "-",
            r["created_at"][:19].replace("T", " "),
            (r["revoked_at"] or "-")[:19].replace("T", " "),
        )
    console.print(table)


@clients_app.command()
def add(
    name: Annotated[str, typer.Argument(help="Lowercase name, 1-32 letters, digits or '-'")],
    role: Annotated[str, typer.Option(help="client: its own sessions; operator: every session")] = "client",
    max_sessions: Annotated[
        int | None,
        typer.Option(min=1, help="Live sessions at once (default: PROVISIONER_CLIENTS__MAX_SESSIONS)"),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(help="Sessions started per minute, N/min (default: PROVISIONER_CLIENTS__RATE_PER_MIN)"),
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="Daily budget, e.g. '5 USD/day': what its numbers may cost per day")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"name": ..., "token": ...}')] = False,
) -> None:
    """Add a client and print its token, once: only its hash is kept."""
    from provisioner.settings import get_settings
    from provisioner.store import clients as clientrepo
    from provisioner.store import spend as spendrepo

    if role not in {r.value for r in clientrepo.Role}:
        err.print(f"[red]--role must be client or operator, not {role!r}[/red]")
        raise typer.Exit(2)
    sessions = load_sessionmaker()
    defaults = get_settings().clients
    rate_per_min = parse_rate(rate) if rate is not None else defaults.rate_per_min
    daily = parse_budget(budget) if budget is not None else None
    try:
        with sessions.begin() as db:
            client, token = clientrepo.create_client(
                db,
                name,
                role=clientrepo.Role(role),
                max_sessions=max_sessions if max_sessions is not None else defaults.max_sessions,
                rate_per_min=rate_per_min,
            )
            if daily is not None:
                spendrepo.set_budget(db, name, daily.limit.amount, daily.limit.currency)
    except clientrepo.ClientError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps({"name": client.name, "token": token}))
        return
    limits = f"{client.max_sessions or 'unlimited'} live, {client.rate_per_min or 'unlimited'}/min"
    if daily is not None:
        limits += f", {daily}"
    console.print(f"client {client.name} ({client.role.value}, {limits}); its token, shown only now:")
    print(token)


@clients_app.command("budget")
def budget_(
    name: Annotated[str, typer.Argument(help="The client (or operator, prefect)")],
    budget: Annotated[str, typer.Argument(help="Daily budget, e.g. '5 USD/day'; 'none' removes it")],
) -> None:
    """Set (or remove) a client's daily budget: what its numbers may cost per calendar day."""
    from provisioner.store import spend as spendrepo

    daily = None if budget.strip().lower() == "none" else parse_budget(budget)
    with load_sessionmaker().begin() as db:
        if daily is None:
            spendrepo.set_budget(db, name, None)
        else:
            spendrepo.set_budget(db, name, daily.limit.amount, daily.limit.currency)
    console.print(f"{name}: daily budget {daily or 'removed'}")


def parse_budget(text: str):
    """'5 USD/day' -> Budget; exit 2 naming the form otherwise."""
    from provisioner.values.money import Budget

    try:
        return Budget.parse(text)
    except ValueError as exc:
        err.print(f"[red]--budget: {exc}[/red]")
        raise typer.Exit(2) from None


@clients_app.command()
def revoke(name: str) -> None:
    """Refuse the client's token (and its session links) from now on, in every gateway."""
    from provisioner.store import clients as clientrepo

    with load_sessionmaker().begin() as db:
        done = clientrepo.revoke_client(db, name)
    if not done:
        err.print(f"[red]no active client {name!r}[/red]")
        raise typer.Exit(2)
    console.print(f"client {name}: revoked")
