"""`provisioner sessions`, `release` and `code`: list sessions, end one, ask for another code."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from provisioner.cli.common import console, err, load_deps, load_settings, new_table, quiet_prefect


def sessions(
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts")] = False,
) -> None:
    """List sessions, newest first (ids are never shortened: copy them into `release`)."""
    load_settings()
    from provisioner.steps.deps import get_deps
    from provisioner.steps.links import session_page_url
    from provisioner.store import LIVE, State, get_sessionmaker
    from provisioner.store import leases as lease_repo
    from provisioner.store import repository as repo
    from provisioner.values.phones import mask_phone

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
                # The gateway's signed session page, only while the session is live; never a port.
                "page_url": session_page_url(deps.settings, s.id, s.owner, s.expires_at)
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
    table = new_table("id", "state", "service", "provider", "phone", "created", "session page", "last error")
    for r in rows:
        table.add_row(
            r["id"],
            r["state"],
            f"{r['service']}/{r['country']}",
            r["provider"] or "-",
            r["phone"] or "-",
            r["created_at"][:19].replace("T", " "),
            r["page_url"] or "-",
            (r["last_error"] or "")[:60],
        )
    console.print(table)
    if flagged:
        err.print(f"[yellow]{flagged} number(s) need a person: provisioner leases --attention[/yellow]")


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
    quiet_prefect(verbose)
    load_settings()
    from flows.release import release_session

    state = release_session(session_id=session_id, return_state=True)
    if state.is_completed():
        console.print(state.result())
        return
    err.print(f"[red]{state.message}[/red]")
    raise typer.Exit(1)


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
    load_settings()
    from providers.errors import ProviderError
    from provisioner.steps.codes import AnotherCodeRefused, request_another_code, wait_for_code
    from provisioner.store.repository import SessionNotFound

    deps = load_deps()
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
