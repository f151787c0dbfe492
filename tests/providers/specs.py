"""One `Spec` per protocol dialect, for the provider tests shared by every protocol.

Adding a provider: its client module, its simulator wire format, and one entry in SPECS. Every
SMS-Activate dialect the simulator speaks (simulator.dialects) gets its own spec.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from providers import PROVIDER_NAMES
from providers.base import Cancelled, Expired
from provisioner.simulator.dialects import NAMES as DIALECT_NAMES
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
    # report it as cancelled; OnlineSim and status-code providers forget it (read as expired).
    after_expiry: type = Cancelled
    dialect: str = "classic"  # the simulator's SMS-Activate dialect (simulator.dialects)
    charged: Decimal = Decimal("10.00")  # what buying the default 10.00 offer really costs
    currency: str = "USD"

    @property
    def id(self) -> str:
        return self.name if self.dialect == "classic" else f"{self.name}-{self.dialect}"


_SMS_ACTIVATE = Spec(
    "sms_activate", "getBalance", "getNumber", "getStatus", "setStatus", currency="RUB", lists_open=True
)
SPECS = {
    spec.id: spec
    for spec in (
        Spec(
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
        Spec(
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
        _SMS_ACTIVATE,
        replace(_SMS_ACTIVATE, dialect="status-codes", buy_action="getNumberV2", after_expiry=Expired),
        replace(_SMS_ACTIVATE, dialect="price-map"),
        replace(_SMS_ACTIVATE, dialect="service-prices"),
        replace(
            _SMS_ACTIVATE,
            dialect="auction",
            buy_action="getNumberV2",
            charged=Decimal("8.70"),
            currency="USD",
        ),
    )
}
assert {spec.name for spec in SPECS.values()} == set(PROVIDER_NAMES)
assert {spec.dialect for spec in SPECS.values()} == set(DIALECT_NAMES)

KEY = SIM_KEY
