"""Amounts with their currency, and the one conversion between currencies.

A price cap is "0.50 USD", never a bare number: providers bill in different currencies, so a bare
20 would mean 20 RUB at one and 20 USD (about 90 times more) at another. Conversion uses only the
rates the operator set (`PROVISIONER_FX`, each currency's value in USD, e.g. {"RUB": "0.011"});
without the rates a pair needs, there is no comparison and the provider is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation

FX_REFERENCE = "USD"  # PROVISIONER_FX gives each currency's value in this one
INT_DIGITS, FRACTION_DIGITS = 8, 4  # what the leases table stores: Numeric(12, 4)
_AMOUNT = rf"(\d{{1,{INT_DIGITS}}}(?:\.\d{{1,{FRACTION_DIGITS}}})?)"
_CURRENCY = r"([A-Za-z]{3})"
_FORMS = (re.compile(rf"^{_AMOUNT}\s*{_CURRENCY}$"), re.compile(rf"^{_CURRENCY}\s*{_AMOUNT}$"))
QUANTUM = Decimal("0.0001")  # what the leases table stores


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str  # ISO 4217, upper case

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

    @classmethod
    def parse(cls, value: object) -> Money:
        """'0.50 USD' (or 'USD 0.50', '0.5usd'); ValueError naming the expected form otherwise."""
        if isinstance(value, Money):
            return value
        if isinstance(value, Mapping):
            value = f"{value.get('amount', '')} {value.get('currency', '')}"
        text = str(value).strip()[:64]
        for form in _FORMS:
            found = form.match(text)
            if found:
                a, b = found.groups()
                amount, currency = (a, b) if form is _FORMS[0] else (b, a)
                try:
                    parsed = Decimal(amount)
                except InvalidOperation:
                    break
                if parsed <= 0:
                    raise ValueError(f"price {text!r} must be above zero")
                return cls(parsed, currency.upper())
        raise ValueError(
            f"price {text!r} needs an amount and a currency, such as '0.50 USD' or '45 RUB' (the amount "
            f"in fixed notation: at most {INT_DIGITS} digits before the point and {FRACTION_DIGITS} after)"
        )


@dataclass(frozen=True)
class Budget:
    """Money that may be spent per calendar day: '5 USD/day' (or '5 USD')."""

    limit: Money

    def __str__(self) -> str:
        return f"{self.limit}/day"

    @classmethod
    def parse(cls, value: object) -> Budget:
        if isinstance(value, Budget):
            return value
        text = str(value).strip()[:64]
        amount, _, period = text.partition("/")
        if period and period.strip().lower() != "day":
            raise ValueError(f"budget {text!r}: only a daily budget is supported, such as '5 USD/day'")
        return cls(Money.parse(amount))


class NoRate(Exception):
    """No operator-set rate converts between two currencies."""


def rate(source: str, target: str, fx: Mapping[str, Decimal]) -> Decimal:
    """How many `target` one `source` is worth, from the operator's rates (values in USD)."""
    if source == target:
        return Decimal(1)
    values = {FX_REFERENCE: Decimal(1), **{k.upper(): Decimal(str(v)) for k, v in fx.items()}}
    missing = [c for c in (source, target) if c not in values or values[c] <= 0]
    if missing:
        raise NoRate(
            f"no exchange rate for {' and '.join(missing)} in PROVISIONER_FX "
            f'(each currency\'s value in {FX_REFERENCE}, e.g. {{"RUB": "0.011"}})'
        )
    return values[source] / values[target]


def cap_in(cap: Money, currency: str, fx: Mapping[str, Decimal]) -> Decimal:
    """The cap expressed in `currency`, rounded down so a price at it never exceeds the cap.
    Raises NoRate when the operator set no rate for the pair."""
    if cap.currency == currency:
        return cap.amount
    return (cap.amount * rate(cap.currency, currency, fx)).quantize(QUANTUM, rounding=ROUND_DOWN)


def convert(money: Money, currency: str, fx: Mapping[str, Decimal]) -> Decimal:
    """`money` expressed in `currency` (not rounded). Raises NoRate."""
    return money.amount * rate(money.currency, currency, fx)
