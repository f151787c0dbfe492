"""`provisioner secrets`: secret settings kept as Prefect Secret blocks (provisioner.settings.secrets)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

secrets_app = typer.Typer(no_args_is_help=True, help="Secret settings as Prefect Secret blocks.")
console = Console()
err = Console(stderr=True)


def _paths():
    from provisioner.settings.model import Settings
    from provisioner.settings.secrets import secret_paths

    return secret_paths(Settings)


def _require_api() -> None:
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        err.print(
            "[red]PREFECT_API_URL is not set: point it at the Prefect server that keeps the blocks[/red]"
        )
        raise typer.Exit(2)


@secrets_app.command("set")
def set_secret(
    name: Annotated[str, typer.Argument(help="The variable (PROVISIONER_GATEWAY__TOKEN) or block name")],
) -> None:
    """Store a secret setting as the Prefect Secret block named after it; the value is read from
    stdin (a hidden prompt on a terminal), never from the command line."""
    from prefect.blocks.system import Secret

    from provisioner.settings.secrets import block_name, path_for_name, variable

    paths = _paths()
    path = path_for_name(name, paths)
    if path is None:
        known = ", ".join(variable(p) for p in paths)
        err.print(f"[red]{name} is not a secret setting; secret settings: {known}[/red]")
        raise typer.Exit(2)
    _require_api()
    if sys.stdin.isatty():
        value = typer.prompt(variable(path), hide_input=True)
    else:
        value = sys.stdin.readline().rstrip("\n")
    if not value:
        err.print("[red]empty value: nothing stored[/red]")
        raise typer.Exit(2)
    Secret(value=value).save(block_name(path), overwrite=True)
    console.print(f"stored Secret block {block_name(path)} ({variable(path)}); processes read it at start")


@secrets_app.command("list")
def list_secrets() -> None:
    """Each secret setting, its block name, and whether the block exists (values never shown)."""
    from provisioner.settings.secrets import block_name, read_blocks, variable

    _require_api()
    paths = _paths()
    present = read_blocks([block_name(p) for p in paths])
    for path in paths:
        mark = "[green]block[/green]" if block_name(path) in present else "[dim]-[/dim]    "
        console.print(f"{mark} {block_name(path):42} {variable(path)}")
