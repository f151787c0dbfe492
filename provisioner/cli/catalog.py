"""`provisioner catalog`: each provider's mapping of canonical names to its codes, its offer for a
service, and what its listings name that maps to nothing."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from provisioner.cli.common import Provider, console, err


def catalog(
    provider: Annotated[
        list[Provider] | None,
        typer.Option("--provider", "-p", help="Only this provider (repeatable)"),
    ] = None,
    refresh: Annotated[
        bool, typer.Option(help="Learn the catalogs from the providers' listings now")
    ] = False,
    service: Annotated[
        str | None, typer.Option(help="Show each provider's offer for this service (default: the default)")
    ] = None,
    country: Annotated[str | None, typer.Option(help="... in this country (default: the default)")] = None,
) -> None:
    """Show each provider's catalog: canonical service and country -> its codes, its price and count
    for a service, and the services and countries its listings name that map to nothing; and each
    account's currency (as the provider reports it, or as configured) and balance, read now."""
    from providers.catalog import target
    from providers.errors import ProviderError
    from provisioner.settings import SettingsError, get_settings
    from provisioner.steps import accounts, catalogs
    from provisioner.steps.deps import get_deps
    from provisioner.steps.spend import decide_currency
    from provisioner.values.canonical import check_country, check_service

    try:
        settings = get_settings()
        wanted_service = check_service(service or settings.defaults.service)
        wanted_country = check_country(country or settings.defaults.country)
    except (SettingsError, ValueError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    configured = settings.providers.configured_names()
    names = provider or configured
    missing = [n for n in names if n not in configured]
    if missing or not names:
        err.print(
            f"[red]not configured: {', '.join(missing) or 'any provider'}[/red] "
            "(set PROVISIONER_PROVIDERS__<NAME>__API_KEY for sms_man, onlinesim or sms_activate)"
        )
        raise typer.Exit(2)
    deps = get_deps()
    if refresh:
        for name in names:
            try:
                catalogs.refresh(deps, name)
                console.print(f"{name}: catalog refreshed from its listings")
            except ProviderError as exc:
                err.print(f"[yellow]{name}: refresh failed, the previous catalog stays: {exc}[/yellow]")
    accounts_table = Table("provider", "currency", "as", "balance", "problem", title="accounts")
    for name in names:
        row = accounts.read_account(deps, name)
        configured = deps.provider(name).currency
        reported = row.currency if row.currency_source != accounts.CONFIGURED else None
        problem = row.error or decide_currency(name, configured, reported) or ""
        accounts_table.add_row(
            name,
            row.currency or configured,
            row.currency_source or "-",
            f"{row.balance}" if row.balance is not None else "-",
            problem,
        )
    console.print(accounts_table)
    offers = Table(
        "provider", "service", "country", "price", "count", title=f"{wanted_service} in {wanted_country}"
    )
    for name in names:
        learned = catalogs.stored(deps, name)
        current = catalogs.catalog_for(deps, name)
        when = f"{learned.refreshed_at:%Y-%m-%d %H:%M} UTC" if learned and learned.refreshed_at else "-"
        how = (
            f"learned from its listings at {when}"
            if current.source == "listing"
            else f"built-in table since {when} (its listings could not be read)"
        )
        console.print(f"\n[bold]{name}[/bold]: {how}")
        mapping = Table("service", "code", "country", "code")
        services, countries = sorted(current.services.items()), sorted(current.countries.items())
        for i in range(max(len(services), len(countries))):
            s = services[i] if i < len(services) else ("", "")
            c = countries[i] if i < len(countries) else ("", "")
            mapping.add_row(*s, *c)
        console.print(mapping)
        for kind, unmapped in (
            ("services", current.unmapped_services),
            ("countries", current.unmapped_countries),
        ):
            if unmapped:
                listed = ", ".join(f"{code} ({title})" for code, title in sorted(unmapped.items()))
                console.print(f"unmapped {kind}: {listed}")
        codes = target(current, wanted_service, wanted_country)
        if isinstance(codes, str):
            offers.add_row(name, "-", "-", codes, "-")
            continue
        try:
            client = deps.provider(name)
            info = client.price(codes.service, codes.country)
            offers.add_row(
                name, codes.service, codes.country, f"{info.price} {info.currency}", str(info.available)
            )
        except ProviderError as exc:
            offers.add_row(name, codes.service, codes.country, str(exc), "-")
    console.print()
    console.print(offers)
