"""A provider's catalog: canonical service names and ISO countries -> that provider's own codes.

Learned from the provider's listing endpoints (`Listing`, fetched by each client's `listing()`):
titles (and the codes some listings add) are matched against `provisioner.values.canonical`. Without a
listing, the built-in table gives what is known per protocol (SMS-Activate codes and common
country numbers, OnlineSim slugs and calling codes; nothing for SMS-MAN's numeric ids). Operator
overrides (`PROVISIONER_PROVIDERS__<NAME>__SERVICES` / `__COUNTRIES`) win over both.
`target()` answers, for one request, the codes to send or why this provider cannot serve it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from provisioner.values.canonical import COUNTRIES, SERVICES, match_country, match_service, provider_code
from provisioner.values.countries import ONLINESIM_CODES, SMS_ACTIVATE_NUMBERS


@dataclass(frozen=True)
class Entry:
    """One row of a listing: the provider's code, its title and, where the listing has one, a
    secondary short code (SMS-MAN: the SMS-Activate-style service code, the country's ISO code)."""

    code: str
    title: str
    short: str = ""


@dataclass(frozen=True)
class Listing:
    services: list[Entry]
    countries: list[Entry]
    # (service code, country code) pairs, for a listing that names services per country (OnlineSim)
    sold: list[tuple[str, str]] | None = None


@dataclass(frozen=True)
class Catalog:
    provider: str
    services: dict[str, str]  # canonical name -> provider code
    countries: dict[str, str]  # ISO alpha-2 -> provider code
    unmapped_services: dict[str, str] = field(default_factory=dict)  # provider code -> title
    unmapped_countries: dict[str, str] = field(default_factory=dict)
    source: str = "built-in"  # built-in | listing
    refreshed_at: datetime | None = None
    # canonical service -> the ISO countries it is listed in, when the listing says (OnlineSim)
    sold_in: dict[str, list[str]] | None = None

    def with_overrides(self, services: Mapping[str, str], countries: Mapping[str, str]) -> Catalog:
        if not services and not countries:
            return self
        # The operator's codes are not second-guessed by the listing's per-country availability.
        sold_in = self.sold_in
        if sold_in is not None:
            sold_in = None if countries else {n: isos for n, isos in sold_in.items() if n not in services}
        return replace(
            self,
            services={**self.services, **services},
            countries={**self.countries, **{k.upper(): v for k, v in countries.items()}},
            sold_in=sold_in,
        )


# Codes a protocol's listing may carry that identify a canonical entry exactly.
_SERVICE_CODES = {
    "sms_activate": {s.sms_activate: s.name for s in SERVICES.values()},
    "onlinesim": {s.onlinesim: s.name for s in SERVICES.values()},
}
_SERVICE_SHORT_CODES = {"sms_man": _SERVICE_CODES["sms_activate"]}  # SMS-MAN's `code` field


def _unique_calling_codes() -> dict[str, str]:
    """Calling code -> ISO where only one country has it, plus OnlineSim's explicit choices."""
    owners: dict[str, list[str]] = {}
    for c in COUNTRIES.values():
        owners.setdefault(c.calling_code, []).append(c.iso)
    codes = {code: isos[0] for code, isos in owners.items() if len(isos) == 1}
    codes.update({code: iso for iso, code in ONLINESIM_CODES.items()})
    return codes


_ONLINESIM_COUNTRY_CODES = _unique_calling_codes()


def builtin(provider: str) -> Catalog:
    """What the built-in table knows of a protocol's codes."""
    if provider == "sms_activate":
        return Catalog(
            provider,
            {s.name: s.sms_activate for s in SERVICES.values()},
            dict(SMS_ACTIVATE_NUMBERS),
        )
    if provider == "onlinesim":
        return Catalog(
            provider,
            {s.name: s.onlinesim for s in SERVICES.values()},
            {iso: code for code, iso in _ONLINESIM_COUNTRY_CODES.items()},
        )
    return Catalog(provider, {}, {})


def _best(entries: list[Entry], score_of) -> tuple[dict[str, str], dict[str, str]]:
    """canonical -> code of the best-scoring entry (first wins a tie), and the entries left over."""
    best: dict[str, tuple[int, str]] = {}
    for entry in entries:
        found = score_of(entry)
        if found is None:
            continue
        canonical, score = found
        if canonical not in best or score > best[canonical][0]:
            best[canonical] = (score, entry.code)
    chosen = {code for _, code in best.values()}
    unmapped = {e.code: e.title for e in entries if e.code not in chosen}
    return {name: code for name, (_, code) in best.items()}, unmapped


def learn(provider: str, listing: Listing, now: datetime | None = None) -> Catalog:
    """The catalog a provider's own listing gives: every entry matched to a canonical name."""
    exact = _SERVICE_CODES.get(provider, {})
    short = _SERVICE_SHORT_CODES.get(provider, {})

    def service_score(entry: Entry) -> tuple[str, int] | None:
        if entry.code in exact:
            return exact[entry.code], 3
        if entry.short in short:
            return short[entry.short], 3
        return match_service(entry.title)

    def country_score(entry: Entry) -> tuple[str, int] | None:
        if provider == "onlinesim" and entry.code in _ONLINESIM_COUNTRY_CODES:
            return _ONLINESIM_COUNTRY_CODES[entry.code], 3
        if entry.short.upper() in COUNTRIES:
            return entry.short.upper(), 3
        return match_country(entry.title)

    services, unmapped_services = _best(listing.services, service_score)
    countries, unmapped_countries = _best(listing.countries, country_score)
    sold_in = None
    if listing.sold is not None:
        service_of = {code: name for name, code in services.items()}
        country_of = {code: iso for iso, code in countries.items()}
        sold_in = {}
        for service_code, country_code in listing.sold:
            if service_code in service_of and country_code in country_of:
                sold_in.setdefault(service_of[service_code], []).append(country_of[country_code])
    return Catalog(
        provider,
        services,
        countries,
        unmapped_services,
        unmapped_countries,
        source="listing",
        refreshed_at=now,
        sold_in=sold_in,
    )


@dataclass(frozen=True)
class Codes:
    service: str
    country: str


def target(catalog: Catalog, service: str, country: str) -> Codes | str:
    """The provider's codes for a request, or why this provider cannot serve it.

    `service`/`country` are canonical, or `<provider>:<code>`, which goes as is to that provider only.
    """
    name = catalog.provider
    specific = provider_code(service)
    if specific:
        if specific[0] != name:
            return f"service {service} is specific to {specific[0]}"
        service_code = specific[1]
    else:
        service_code = catalog.services.get(service, "")
    specific_country = provider_code(country)
    if specific_country:
        if specific_country[0] != name:
            return f"country {country} is specific to {specific_country[0]}"
        country_code = specific_country[1]
    else:
        country_code = catalog.countries.get(country, "")
    if not service_code:
        return f"no code for service {service} in {country}"
    if not country_code:
        return f"no code for country {country}"
    if catalog.sold_in is not None and not specific and not specific_country:
        listed_in = catalog.sold_in.get(service)
        if listed_in is not None and country not in listed_in:
            return f"no code for service {service} in {country}"  # listed, but not in that country
    return Codes(service_code, country_code)


def as_json(catalog: Catalog) -> dict:
    return {
        "services": catalog.services,
        "countries": catalog.countries,
        "unmapped_services": catalog.unmapped_services,
        "unmapped_countries": catalog.unmapped_countries,
        "source": catalog.source,
        "sold_in": catalog.sold_in,
    }


def from_json(provider: str, data: Mapping, refreshed_at: datetime | None) -> Catalog:
    return Catalog(
        provider,
        dict(data.get("services") or {}),
        dict(data.get("countries") or {}),
        dict(data.get("unmapped_services") or {}),
        dict(data.get("unmapped_countries") or {}),
        source=str(data.get("source") or "listing"),
        refreshed_at=refreshed_at,
        sold_in=data.get("sold_in"),
    )
