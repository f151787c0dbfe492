"""The typed interface every SMS provider client implements, and the values it returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from providers.catalog import Listing


@dataclass(frozen=True)
class Lease:
    """A rented number: what we paid and where to read its SMS."""

    provider: str
    activation_id: str
    phone: str  # E.164 with a leading "+"
    price: Decimal
    currency: str
    bought_at: datetime  # tz-aware UTC
    # Where `price` comes from: "reply" (the purchase reply named the amount charged), "quote" (the
    # price list read right before buying), "cap" (no quote: the most it can have cost).
    price_source: str = "quote"


@dataclass(frozen=True)
class Account:
    """A provider account's balance, and its currency where the reply names one (None: the
    protocol's balance reply does not say)."""

    balance: Decimal
    currency: str | None


@dataclass(frozen=True)
class PriceInfo:
    price: Decimal
    available: int | None  # None: the provider lists a price but not how many numbers it has
    currency: str


@dataclass(frozen=True)
class Waiting:
    status: str


@dataclass(frozen=True)
class CodeReceived:
    code: str
    text: str


@dataclass(frozen=True)
class Cancelled:
    status: str


@dataclass(frozen=True)
class Expired:
    status: str


CheckResult = Waiting | CodeReceived | Cancelled | Expired


@dataclass(frozen=True)
class OpenActivation:
    """One open activation of the account, as a provider lists it (to find a lost purchase)."""

    lease: Lease
    service: str
    country: str
    bought_at: datetime | None  # when the provider says it was bought; None when the list omits it


@runtime_checkable
class Provider(Protocol):
    """One SMS provider account. Methods raise only `providers.errors.ProviderError` subclasses."""

    name: str
    currency: str  # the account's currency: every price and lease is in it

    def balance(self) -> Decimal: ...

    def account(self) -> Account:
        """The balance and, where the reply names it, the account's currency."""
        ...

    def price(self, service: str, country: str) -> PriceInfo: ...

    def acquire(self, service: str, country: str, max_price: Decimal | None) -> Lease: ...

    def check(self, lease: Lease) -> CheckResult: ...

    def check_open_activations(self) -> dict[str, CheckResult]:
        """Every open activation of the account with its status (activation id -> result), in one
        call; raises NotSupported when the protocol cannot list them (then check each lease)."""
        ...

    def finish(self, lease: Lease) -> None: ...

    def cancel(self, lease: Lease) -> None:
        """Release the number, refunded; an already cancelled or ended lease counts as done.

        Raises NotRefundable when the code already arrived (finish it instead) and CancelTooEarly
        when the provider refuses the cancel for now."""
        ...

    def request_another_code(self, lease: Lease) -> Lease:
        """Ask for the next SMS on the same number; returns the lease to poll from now on (a provider
        may answer a new activation id for it)."""
        ...

    def list_open_activations(self) -> list[OpenActivation]:
        """Open activations of the account; raises NotSupported when the provider cannot list them."""
        ...

    def listing(self) -> Listing:
        """The provider's own service and country lists (its catalog is learned from them)."""
        ...

    def close(self) -> None: ...
