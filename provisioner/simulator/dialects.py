"""Dialects of the SMS-Activate protocol the simulator speaks, as data.

Providers copying the protocol differ in how they report errors, list prices and charge; each
simulator key speaks one dialect (`Simulator(dialect=...)`, `sim.set_dialect(key, name)`, or
`configure(dialect=...)` for every key without its own):

    classic       plain-text tokens with HTTP 200; prices {country:{service:{cost,count}}};
                  no getNumberV2 (answers BAD_ACTION)
    status-codes  Hero/Tiger-style: errors as HTTP statuses with the token as body (HTTP_STATUS),
                  early cancel as 403 JSON {"title","info":{"minActivationTime"}}, an unknown or
                  expired id as 404, a cancelled activation reads ACCESS_CANCEL; getNumberV2
    price-map     SMSHub-style prices {country:{service:{"<price>": count}}}
    service-prices privatesms-style prices {service:{"<country>": price}} (no count; an unknown
                  service answers {"status":"false","msg":"service is incorrect"})
    auction       the listed cost is a suggested maximum: the charge is AUCTION_CHARGE of it,
                  answered by getNumberV2 (activationCost, currency 840 = USD)

The native SMS-MAN and OnlineSim APIs have one dialect each (classic).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from decimal import Decimal

AUCTION_CHARGE = Decimal("0.87")


@dataclass(frozen=True)
class Dialect:
    name: str
    http_errors: bool = False  # errors as HTTP status codes with the token as body
    prices: str = "cost"  # cost | price-map | service-prices
    number_v2: bool = False  # getNumberV2 answers JSON with the amount charged
    charge: Decimal = Decimal(1)  # fraction of the listed cost actually charged
    currency: int = 643  # ISO 4217 number in getNumberV2 replies
    cancelled_token: str = "STATUS_CANCEL"  # what getStatus answers for a cancelled activation


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect("classic"),
        Dialect("status-codes", http_errors=True, number_v2=True, cancelled_token="ACCESS_CANCEL"),
        Dialect("price-map", prices="price-map"),
        Dialect("service-prices", prices="service-prices"),
        Dialect("auction", number_v2=True, charge=AUCTION_CHARGE, currency=840),
    )
}
NAMES: tuple[str, ...] = tuple(DIALECTS)

# status-codes: the HTTP status each token comes with (any other token: 200).
HTTP_STATUS = {
    "BAD_KEY": 401,
    "NO_BALANCE": 402,
    "WRONG_MAX_PRICE": 400,
    "BAD_STATUS": 400,
    "BAD_SERVICE": 400,
    "BAD_ACTION": 400,
    "CHANNELS_LIMIT": 403,
    "BANNED": 403,
    "EARLY_CANCEL_DENIED": 403,
    "NO_ACTIVATION": 404,
    "NOT_FOUND": 404,
    "OTP_RECEIVED": 409,
    "FREE_CANCELLATION_EXPIRED": 409,
    "ACTIVATION_NOT_ACTIVE": 409,
}

# SimError reason -> token, per dialect family (text tokens vs status-code tokens).
CLASSIC_TOKENS = {
    "no_key": "BAD_KEY",
    "bad_key": "BAD_KEY",
    "bad_service": "BAD_SERVICE",
    "bad_country": "BAD_COUNTRY",
    "no_numbers": "NO_NUMBERS",
    "no_balance": "NO_BALANCE",
    "no_activation": "NO_ACTIVATION",
    "already": "NO_ACTIVATION",
    "finished": "BAD_STATUS",
    "has_code": "BAD_STATUS",
    "bad_status": "BAD_STATUS",
}
STATUS_CODE_TOKENS = {
    **CLASSIC_TOKENS,
    "no_activation": "NOT_FOUND",
    "already": "ACTIVATION_NOT_ACTIVE",
    "finished": "ACTIVATION_NOT_ACTIVE",
    "has_code": "OTP_RECEIVED",
}


def get(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; expected one of {', '.join(NAMES)}") from None


def status_of(dialect: Dialect, token: str) -> int:
    """The HTTP status a token (`TOKEN[:data]`) is sent with in this dialect."""
    return HTTP_STATUS.get(token.split(":", 1)[0], 200) if dialect.http_errors else 200


def token_for(dialect: Dialect, reason: str) -> str:
    table = STATUS_CODE_TOKENS if dialect.http_errors else CLASSIC_TOKENS
    return table.get(reason, "BAD_STATUS")


def price_list(
    dialect: Dialect, offers: dict, services: Container[str], country: str | None, service: str | None
) -> dict:
    """getPrices in this dialect's shape for the offers ((service, country) -> Offer) matching the
    filters (None: any); `services` is the protocol's code space."""
    shown = {
        (s, c): o
        for (s, c), o in offers.items()
        if country in (None, c)
        and service in (None, s)
        and (dialect.prices != "service-prices" or o.count > 0)
    }
    if dialect.prices == "service-prices":
        if service is not None and service not in services:
            return {"status": "false", "msg": "service is incorrect"}
        by_service: dict[str, dict] = {}
        for (s, c), o in shown.items():
            by_service.setdefault(s, {})[c] = float(o.price)
        return by_service
    prices: dict[str, dict] = {}
    for (s, c), o in shown.items():
        if dialect.prices == "price-map":
            # the offer's own level, and a dearer one with a few numbers (the cheapest in stock wins)
            entry = {f"{o.price:.2f}": o.count, f"{o.price * Decimal('1.25'):.2f}": min(o.count, 3)}
        else:
            entry = {"cost": f"{o.price:.2f}", "count": o.count}
        prices.setdefault(c, {})[s] = entry
    return prices
