"""`provisioner leases`: the rented numbers, and those a person must look at."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from provisioner.cli.common import console, load_settings, new_table


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
    load_settings()
    from provisioner.store import get_sessionmaker
    from provisioner.store import leases as lease_repo
    from provisioner.values.phones import mask_phone

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
    table = new_table("session", *columns, *(["why"] if attention else []), whole=("outcome",))
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
