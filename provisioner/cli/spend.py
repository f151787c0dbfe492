"""`provisioner spend`: where the money went, from the leases (charged, refunded, open, reserved,
overcharged), grouped by client, provider, day or service; and the budgets with today's spend."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated

import typer
from rich.table import Table

from provisioner.cli.common import console, err

_SINCE = re.compile(r"^\s*(\d{1,5})\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_since(text: str) -> timedelta:
    """'7d', '12h', '30m' -> a timedelta."""
    found = _SINCE.match(text)
    if not found:
        raise typer.BadParameter(f"{text!r}: write a number and d, h or m, e.g. 7d")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def spend(
    since: Annotated[str, typer.Option(help="How far back: 7d, 12h, 30m (by purchase time)")] = "7d",
    by: Annotated[str, typer.Option(help="Group by client, provider, day or service")] = "provider",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for scripts")] = False,
) -> None:
    """What the numbers cost: charged (bought, not refunded), refunded, open (bought, may still be
    refunded), reserved (purchases not settled), overcharged; and each budget's spend today."""
    from sqlalchemy import func, select

    from provisioner.settings import SettingsError, get_settings
    from provisioner.steps import budgets
    from provisioner.store import get_sessionmaker
    from provisioner.store import spend as spendrepo

    if by not in spendrepo.GROUPS:
        err.print(f"[red]--by must be one of {', '.join(spendrepo.GROUPS)}, not {by!r}[/red]")
        raise typer.Exit(2)
    try:
        window = parse_since(since)
        settings = get_settings()
    except typer.BadParameter as exc:
        err.print(f"[red]--since {exc}[/red]")
        raise typer.Exit(2) from None
    except SettingsError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    with get_sessionmaker()() as db:
        now = db.scalar(select(func.now()))
        rows = spendrepo.report(db, now - window, by, settings.spend.timezone)
        owners = [None, *(row.owner for row in spendrepo.list_budgets(db))]
        states = {s.key: s for owner in owners for s in budgets.budget_states(db, settings, owner)}
    totals: dict[str, dict[str, str]] = {}
    for row in rows:
        total = totals.setdefault(
            row["currency"], {"charged": "0", "refunded": "0", "open": "0", "reserved": "0"}
        )
        for field in total:
            total[field] = str(Decimal(total[field]) + Decimal(row[field]))
    if as_json:
        body = {
            "since": (now - window).isoformat(),
            "by": by,
            "rows": rows,
            "totals": totals,
            "budgets": [s.as_json() for s in states.values()],
        }
        print(json.dumps(body, indent=2))
        return
    table = Table(by, "currency", "charged", "refunded", "open", "reserved", "overcharged", "numbers")
    for row in rows:
        table.add_row(
            row[by], row["currency"], row["charged"], row["refunded"], row["open"], row["reserved"],
            str(row["overcharged"]), str(row["numbers"]),
        )  # fmt: skip
    console.print(table if rows else f"no purchases in the last {since}")
    for currency, total in sorted(totals.items()):
        console.print(f"total {currency}: charged {total['charged']}, refunded {total['refunded']}")
    for state in states.values():
        view = state.as_json()
        console.print(
            f"budget {view['budget']}: {view['limit']}, spent {view['spent']}, left {view['remaining']}, "
            f"resets {view['resets_at']}"
        )
