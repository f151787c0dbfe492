"""Phone numbers as logs, artifacts, metrics and lists show them."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    """Every digit but the last four hidden: +7•••••••1234."""
    if not phone:
        return "-"
    digits = [i for i, ch in enumerate(phone) if ch.isdigit()]
    hidden = set(digits[:-4])
    return "".join("•" if i in hidden else ch for i, ch in enumerate(phone))
