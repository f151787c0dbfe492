"""`provisioner hosts`: the Docker hosts devices are placed on (list, add, drain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from provisioner.cli.common import console, err, load_sessionmaker

hosts_app = typer.Typer(
    add_completion=False,
    invoke_without_command=True,
    help="The Docker hosts devices are placed on: list (default), add, drain.",
)


@hosts_app.callback()
def hosts(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts")] = False,
) -> None:
    """List the hosts: state, capacity, engine URL, stream address, last seen."""
    if ctx.invoked_subcommand is not None:
        return
    from provisioner.store import hosts as hostrepo

    with load_sessionmaker()() as db:
        rows = [
            {
                "name": h.name,
                "state": h.state,
                "cpus": h.cpus,
                "memory_mb": h.memory_mb,
                "docker_url": h.docker_url,
                "tls_ca": h.tls_ca,
                "tls_cert": h.tls_cert,
                "tls_key": h.tls_key,
                "insecure_plain_tcp": h.insecure_plain_tcp,
                "stream_address": h.stream_address,
                "last_seen_at": h.last_seen_at.isoformat() if h.last_seen_at else None,
                "reason": h.reason,
            }
            for h in hostrepo.list_hosts(db)
        ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("no hosts: add one with `provisioner hosts add NAME --docker-url ...`")
        return
    table = Table("name", "state", "cpus", "memory", "docker url", "stream address", "last seen", "reason")
    for r in rows:
        table.add_row(
            r["name"],
            r["state"],
            f"{r['cpus']:g}",
            f"{r['memory_mb']} MB",
            r["docker_url"],
            r["stream_address"],
            (r["last_seen_at"] or "-")[:19].replace("T", " "),
            r["reason"] or "",
        )
    console.print(table)


@hosts_app.command()
def add(
    name: Annotated[str, typer.Argument(help="Lowercase name; its worker serves work queue host-<name>")],
    docker_url: Annotated[str, typer.Option(help="The host's Docker engine, e.g. tcp://10.0.0.5:2376")],
    stream_address: Annotated[
        str, typer.Option(help="Address the gateway reaches the host's published stream ports on")
    ],
    cpus: Annotated[float, typer.Option(help="Cores devices may use on the host")],
    memory: Annotated[str, typer.Option(help="Memory devices may use, Docker notation: 24g, 8192m")],
    tls_ca: Annotated[
        str | None, typer.Option(help="CA certificate that signed the engine's (tcp:// with TLS, verified)")
    ] = None,
    tls_cert: Annotated[str | None, typer.Option(help="Client certificate the engine trusts")] = None,
    tls_key: Annotated[str | None, typer.Option(help="The client certificate's key")] = None,
    insecure_plain_tcp: Annotated[
        bool,
        typer.Option(
            help="Allow plain tcp:// off this machine (labs only: whoever reaches it is root there)"
        ),
    ] = False,
) -> None:
    """Add a host (active), or change an existing host's URL, TLS files, address or capacity.

    A remote engine is reached over TLS (--tls-ca/--tls-cert/--tls-key with tcp://) or SSH
    (ssh://user@host, `pip install 'provisioner[ssh]'`); plain tcp:// is refused unless loopback."""
    from provisioner.runtime.engines import EngineTLS, check_engine_url
    from provisioner.runtime.errors import EngineRefused
    from provisioner.store import hosts as hostrepo

    try:
        paths = [str(Path(p).resolve()) if p else None for p in (tls_ca, tls_cert, tls_key)]
        tls = EngineTLS.of(*paths, where=f"host {name}")
        check_engine_url(docker_url, tls=tls, insecure_plain_tcp=insecure_plain_tcp, where=f"host {name}")
        memory_mb = hostrepo.memory_mb(memory)
        with load_sessionmaker().begin() as db:
            row = hostrepo.add_host(
                db,
                name=name,
                docker_url=docker_url,
                stream_address=stream_address,
                cpus=cpus,
                memory_mb=memory_mb,
                tls_ca=tls.ca if tls else None,
                tls_cert=tls.cert if tls else None,
                tls_key=tls.key if tls else None,
                insecure_plain_tcp=insecure_plain_tcp,
            )
            state = row.state
    except (ValueError, EngineRefused) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"host {name}: {state}, {cpus:g} cpus, {memory_mb} MB")
    console.print(_host_queue(name))


def _host_queue(name: str) -> str:
    """Create the host's work queue host-<name> when a Prefect API is set and answers; else say how."""
    from prefect.settings import get_current_settings

    from provisioner.prefect_api.names import WORK_POOL, queue_name, worker_command

    queue = queue_name(name)
    how = (
        f"create it with `provisioner deploy` (or `prefect work-queue create {queue} --pool {WORK_POOL}`); "
        f"its worker: `{worker_command(name)}`"
    )
    if not get_current_settings().api.url:
        return f"work queue {queue}: not created (PREFECT_API_URL is not set): {how}"
    from provisioner.prefect_api.setup import ensure_work_queue

    try:
        done = ensure_work_queue(queue)
    except Exception as exc:  # the API does not answer, or the pool does not exist yet
        return f"work queue {queue}: not created ({type(exc).__name__}): {how}"
    return f"work queue {queue}: {done}; its worker: `{worker_command(name)}`"


@hosts_app.command()
def drain(name: str) -> None:
    """Place nothing new on the host; its devices stay until their sessions end."""
    from provisioner.store import hosts as hostrepo
    from provisioner.store.host_states import HostState, IllegalHostTransition

    try:
        with load_sessionmaker().begin() as db:
            hostrepo.transition_host(db, name, HostState.DRAINING, reason="drained by an operator")
    except (hostrepo.HostNotFound, IllegalHostTransition) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"host {name}: draining")
