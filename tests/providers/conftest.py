"""Provider clients aimed at the session simulator; `spec` runs a shared test once per protocol
dialect (tests/providers/specs.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from providers import Provider, build_provider
from provisioner.settings.model import ProviderSettings
from provisioner.simulator import Simulator
from tests.providers.specs import SPECS, Spec


@pytest.fixture(params=list(SPECS))
def spec(request: pytest.FixtureRequest, sim: Simulator) -> Spec:
    """One protocol in one dialect; the simulator speaks that dialect to every key."""
    spec = SPECS[request.param]
    sim.configure(dialect=spec.dialect)
    return spec


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
