"""The SMS provider simulator for the whole test session.

`simulator` starts one server on a free loopback port per session; `sim` resets it for each test.
`provider_settings(name)` builds the ProviderSettings that point a client at it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from provisioner.settings.model import ProviderSettings
from provisioner.simulator.server import Simulator
from tests.harness import services

SIM_KEY = "sim-test-key-5f2c9a"
CLIENT_TIMEOUT_S = 2.0


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    with services.simulator({SIM_KEY: "100"}) as sim:
        yield sim


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    simulator.reset()
    return simulator


@pytest.fixture
def provider_settings(sim: Simulator) -> Callable[..., ProviderSettings]:
    """provider_settings(name, api_key=SIM_KEY, timeout_s=2.0) -> settings aimed at the simulator."""

    def build(name: str, api_key: str = SIM_KEY, timeout_s: float = CLIENT_TIMEOUT_S) -> ProviderSettings:
        return ProviderSettings(api_key=api_key, base_url=sim.base_urls[name], timeout_s=timeout_s)

    return build
