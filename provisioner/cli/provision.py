"""`provisioner provision`: run the provision flow in this process, printing each state change."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from provisioner.cli.common import Provider, console, err, load_settings, quiet_prefect


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
            if session is not None:
                from provisioner.settings import get_settings
                from provisioner.steps.links import session_page_url

                page = session_page_url(get_settings(), sid, session.owner, session.expires_at)
                console.print(
                    f"page:       [link={page}]{page}[/link] (screen, number, code; through the gateway)"
                )
            return 0
    reason = (session.last_error if session else None) or state.message
    err.print(f"\n[red]session {sid} {session.state if session else 'not created'}: {reason}[/red]")
    return 1


_OPTION = {"device_profile": "profile", "providers": "provider"}


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
        list[Provider] | None,
        typer.Option("--provider", "-p", help="Provider to try (repeat for fallback order)"),
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
    quiet_prefect(verbose)
    settings = load_settings()
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
