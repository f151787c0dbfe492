"""SMS provider clients behind one Protocol, and the factory that builds one from settings."""

from __future__ import annotations

import httpx

from providers.base import (
    Account,
    Cancelled,
    CheckResult,
    CodeReceived,
    Expired,
    Lease,
    OpenActivation,
    PriceInfo,
    Provider,
    Waiting,
)
from providers.onlinesim import OnlineSimProvider
from providers.sms_activate import SmsActivateProvider
from providers.sms_man import SmsManProvider
from provisioner.settings.model import ProviderSettings

_CLASSES = {"sms_man": SmsManProvider, "onlinesim": OnlineSimProvider, "sms_activate": SmsActivateProvider}
PROVIDER_NAMES: tuple[str, ...] = tuple(_CLASSES)

__all__ = [
    "PROVIDER_NAMES",
    "Account",
    "Cancelled",
    "CheckResult",
    "CodeReceived",
    "Expired",
    "Lease",
    "OpenActivation",
    "PriceInfo",
    "Provider",
    "Waiting",
    "build_provider",
]


def build_provider(
    name: str, settings: ProviderSettings, client: httpx.Client | None = None, *, allow_unquoted: bool = False
) -> Provider:
    """The client for provider `name`; pass a shared httpx.Client to reuse one, else it owns its own.
    ``allow_unquoted``: a provider without a server-side cap buys even without a quote."""
    try:
        cls = _CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; expected one of {', '.join(PROVIDER_NAMES)}") from None
    options: dict = {"currency": settings.currency} if settings.currency else {}  # else the protocol's usual
    if cls is OnlineSimProvider:
        options["allow_unquoted"] = allow_unquoted
    return cls(settings, client, **options)
