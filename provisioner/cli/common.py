"""What every `provisioner` command uses: the consoles, settings and deps with a clear exit, tables."""

from __future__ import annotations

import enum
import os

import typer
from rich.console import Console
from rich.table import Column, Table

from provisioner.settings.model import PROVIDER_NAMES

console = Console()
err = Console(stderr=True)
# --provider takes one of these; anything else is refused by the option parser with the list.
Provider = enum.StrEnum("Provider", {name: name for name in PROVIDER_NAMES})


def load_settings():
    """The settings; invalid ones are a clear exit (2), never a traceback."""
    from provisioner.settings import SettingsError, get_settings

    try:
        return get_settings()
    except SettingsError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def load_sessionmaker():
    """The database's sessionmaker, once the settings load (else a clear exit)."""
    from provisioner.store import get_sessionmaker

    load_settings()
    return get_sessionmaker()


def load_deps():
    """The process's Deps; a database of another deployment (or none yet) is a clear exit."""
    from provisioner.steps.deps import get_deps
    from provisioner.store.identity import IdentityError

    try:
        return get_deps()
    except IdentityError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def quiet_prefect(verbose: bool) -> None:
    # No telemetry: this machine may have no route out, and the CLI should not try.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def new_table(first: str, *others: str, whole: tuple[str, ...] = ()) -> Table:
    """A table whose first column (an id) and ``whole`` columns are never cut or wrapped; the
    others fold, never elide."""
    table = Table(Column(first, no_wrap=True, min_width=12))
    for name in others:
        if name in whole:
            table.add_column(name, no_wrap=True)
        else:
            table.add_column(name, overflow="fold")
    return table
