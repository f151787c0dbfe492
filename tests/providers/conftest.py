"""Provider clients aimed at the session simulator, and one `Spec` per protocol for shared tests.

Adding a provider: its client module, its simulator wire format, and one entry in SPECS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from providers import PROVIDER_NAMES, Provider, build_provider
from providers.base import Cancelled, Expired
from settings.model import ProviderSettings
from tests.plugins.simulator import SIM_KEY


@dataclass(frozen=True)
class Spec:
    """What the shared tests need to know about one protocol."""

    name: str
    balance_action: str
    buy_action: str
    check_action: str
    cancel_action: str
    service: str = "tg"  # the protocol's own codes for telegram in Russia
    country: str = "0"
    early_cancel: bool = True  # the protocol has a minimum time before cancel
    another_code: bool = True
    lists_open: bool = False
    # What `check()` reads once a number's lifetime ran out: the SMS-Activate protocol and SMS-MAN
    # report it as cancelled; OnlineSim forgets the operation (read as expired).
    after_expiry: type = Cancelled


SPECS = {
    "sms_man": Spec(
        "sms_man",
        "get-balance",
        "get-number",
        "get-sms",
        "set-status",
        service="3",
        country="1",
        early_cancel=False,
        another_code=False,
    ),
    "onlinesim": Spec(
        "onlinesim",
        "getBalance",
        "getNum",
        "getState",
        "setOperationOk",
        service="telegram",
        country="7",
        lists_open=True,
        after_expiry=Expired,
    ),
    "sms_activate": Spec("sms_activate", "getBalance", "getNumber", "getStatus", "setStatus"),
}
assert set(SPECS) == set(PROVIDER_NAMES)

KEY = SIM_KEY


@pytest.fixture(params=PROVIDER_NAMES)
def spec(request: pytest.FixtureRequest) -> Spec:
    return SPECS[request.param]


@pytest.fixture
def make_provider(provider_settings: Callable[..., ProviderSettings]) -> Iterator[Callable[..., Provider]]:
    """make_provider(name, **settings overrides) -> a client, closed after the test."""
    built: list[Provider] = []

    def make(name: str, **overrides: object) -> Provider:
        provider = build_provider(name, provider_settings(name, **overrides))
        built.append(provider)
        return provider

    yield make
    for provider in built:
        provider.close()


@pytest.fixture
def provider(spec: Spec, make_provider: Callable[..., Provider]) -> Provider:
    return make_provider(spec.name)
