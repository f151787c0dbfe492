"""The `provisioner` command: provision, list and release sessions, run the simulator, the demo."""

from __future__ import annotations

from typing import Annotated

import typer

from provisioner.cli.catalog import catalog as catalog_command
from provisioner.cli.clients import clients_app
from provisioner.cli.common import console
from provisioner.cli.demo import demo
from provisioner.cli.hosts import hosts_app
from provisioner.cli.leases import leases
from provisioner.cli.operations import deploy, doctor, migrate, reconcile
from provisioner.cli.provision import provision
from provisioner.cli.secrets import secrets_app
from provisioner.cli.services import executor, sim, watch
from provisioner.cli.sessions import code, release, sessions
from provisioner.cli.spend import spend

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


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


# In this order in `provisioner --help`.
COMMANDS = (
    provision,
    sessions,
    leases,
    spend,
    reconcile,
    deploy,
    release,
    sim,
    watch,
    executor,
    code,
    migrate,
    doctor,
    demo,
)
for command in COMMANDS:
    app.command()(command)
app.command(name="catalog")(catalog_command)
app.add_typer(hosts_app, name="hosts")
app.add_typer(clients_app, name="clients")
app.add_typer(secrets_app, name="secrets")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
