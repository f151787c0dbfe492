"""Prefect events the project emits (read back through Prefect's events API and automations)."""

from __future__ import annotations

from decimal import Decimal

from prefect.events import emit_event

LOW_BALANCE_EVENT = "provisioner.provider.balance.low"


def emit_low_balance(provider: str, balance: Decimal, currency: str, threshold: object) -> None:
    """A provider balance that just went below the low-balance threshold (once per crossing)."""
    emit_event(
        event=LOW_BALANCE_EVENT,
        resource={
            "prefect.resource.id": f"provisioner.provider.{provider}",
            "provisioner.provider": provider,
        },
        payload={
            "provider": provider,
            "balance": str(balance),
            "currency": currency,
            "threshold": str(threshold),
        },
    )
