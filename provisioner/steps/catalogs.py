"""Provider catalogs kept in the database, and what one provider gets asked for one request.

A catalog (providers.catalog) is learned from a provider's listing endpoints and cached in
`provider_catalogs`; it is refreshed when older than `PROVISIONER_PROVIDERS__CATALOG_REFRESH_S`
(by reconcile, by `provisioner catalog --refresh`, or on first use). A provider whose listing
cannot be read keeps its last catalog; one that never had one uses the built-in table.
`purchase_target()` turns a canonical request into that provider's codes and price cap, or into
the reason to skip it: no code for the service or country, or no way to compare its currency.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert

from providers.catalog import Catalog, as_json, builtin, from_json, learn, target
from providers.errors import ProviderError
from provisioner.steps.deps import Deps
from provisioner.store.models import CatalogRow
from provisioner.values.money import Money, NoRate, cap_in

log = logging.getLogger(__name__)


def stored(deps: Deps, name: str) -> Catalog | None:
    """The catalog last learned for `name`, without overrides; None if never learned."""
    with deps.sessions() as db:
        row = db.get(CatalogRow, name)
        return from_json(name, row.data, row.refreshed_at) if row is not None else None


def _store(deps: Deps, catalog: Catalog, now: datetime) -> None:
    data = as_json(catalog)
    with deps.sessions.begin() as db:
        statement = insert(CatalogRow).values(provider=catalog.provider, data=data, refreshed_at=now)
        db.execute(
            statement.on_conflict_do_update(
                index_elements=[CatalogRow.provider], set_={"data": data, "refreshed_at": now}
            )
        )


def refresh(deps: Deps, name: str) -> Catalog:
    """Learn `name`'s catalog from its listing endpoints now and store it. Raises ProviderError."""
    now = datetime.now(UTC)
    learned = learn(name, deps.provider(name).listing(), now)
    _store(deps, learned, now)
    log.info(
        "%s catalog: %d services, %d countries mapped; %d services, %d countries unmapped",
        name,
        len(learned.services),
        len(learned.countries),
        len(learned.unmapped_services),
        len(learned.unmapped_countries),
    )
    return learned


def is_stale(deps: Deps, catalog: Catalog | None) -> bool:
    """Never learned, learned too long ago, or only the built-in table (its listing failed)."""
    if catalog is None or catalog.refreshed_at is None or catalog.source != "listing":
        return True
    max_age = timedelta(seconds=deps.settings.providers.catalog_refresh_s)
    return datetime.now(UTC) - catalog.refreshed_at > max_age


def catalog_for(deps: Deps, name: str) -> Catalog:
    """The catalog to use for `name` now, with the operator's overrides applied.

    Learned on first use; a failed listing keeps the stored catalog (or the built-in table)."""
    catalog = stored(deps, name)
    if catalog is None:
        try:
            catalog = refresh(deps, name)
        except ProviderError as exc:
            # Stored, so the next provisions do not wait on a failing listing again; the next
            # reconcile pass tries the listing again (a built-in catalog is always stale).
            log.warning("%s: cannot read its catalog (%s); using the built-in table", name, exc)
            now = datetime.now(UTC)
            catalog = replace(builtin(name), refreshed_at=now)
            _store(deps, catalog, now)
    config = deps.settings.providers.get(name)
    return catalog.with_overrides(config.services, config.countries)


def refresh_stale(deps: Deps, *, force: bool = False) -> dict[str, str]:
    """Refresh every configured provider's catalog older than its refresh age (all with `force`).
    One provider failing does not stop the others. Returns provider -> what happened."""
    results: dict[str, str] = {}
    for name in deps.settings.providers.configured_names():
        try:
            if not force and not is_stale(deps, stored(deps, name)):
                results[name] = "fresh"
                continue
            learned = refresh(deps, name)
            results[name] = f"refreshed: {len(learned.services)} services, {len(learned.countries)} countries"
        except Exception as exc:  # isolated: the next provider still gets its refresh
            log.warning("%s: catalog refresh failed: %s", name, exc)
            results[name] = f"failed: {type(exc).__name__}: {exc}"
    return results


@dataclass(frozen=True)
class PurchaseTarget:
    """What to send one provider: its own codes, and the cap in its own currency."""

    service: str
    country: str
    max_price: Decimal | None
    currency: str


def purchase_target(
    deps: Deps, name: str, *, service: str, country: str, max_price: Money | None
) -> PurchaseTarget | str:
    """The provider's codes and cap for a canonical request, or the reason to skip this provider."""
    catalog = catalog_for(deps, name)
    codes = target(catalog, service, country)
    if isinstance(codes, str):
        return (
            codes
            if catalog.source == "listing"
            else f"{codes} (built-in table: its listings could not be read)"
        )
    currency = deps.provider(name).currency
    cap = None
    if max_price is not None:
        try:
            cap = cap_in(max_price, currency, deps.settings.fx)
        except NoRate as exc:
            return f"prices in {currency}, the cap is {max_price}: {exc}"
    return PurchaseTarget(codes.service, codes.country, cap, currency)
