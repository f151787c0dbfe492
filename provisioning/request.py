"""The provision request: the flow's parameters (rendered as a form in the Prefect UI) and the
gateway's POST body. Business inputs only, never secrets; unset fields take the settings' defaults."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from settings import Settings

ProviderChoice = Literal["sms_man", "onlinesim", "sms_activate"]


class ProvisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Provision request")

    service: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Service code passed to the provider as is (e.g. tg); empty = the configured default",
    )
    country: str | None = Field(
        None,
        min_length=1,
        max_length=16,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Country code passed to the provider as is; empty = the configured default",
    )
    providers: list[ProviderChoice] | None = Field(
        None, description="Providers to try, in fallback order; empty = the configured order"
    )
    max_price: Decimal | None = Field(None, gt=0, description="Highest price to pay for a number")
    device_profile: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Device image profile (stub, android, ...)"
    )
    code_timeout_s: float | None = Field(
        None, gt=0, le=3600, description="Seconds to wait for the code per number"
    )
    number_attempts: int | None = Field(
        None, ge=1, le=10, description="How many numbers to try before giving up"
    )
    ttl_s: float | None = Field(None, gt=0, le=7 * 24 * 3600, description="Seconds the session stays live")


@dataclass(frozen=True)
class ResolvedRequest:
    service: str
    country: str
    providers: list[str]
    max_price: Decimal | None
    device_profile: str
    code_timeout_s: float
    number_attempts: int
    ttl_s: float


def resolve(request: ProvisionRequest, settings: Settings) -> ResolvedRequest:
    d = settings.defaults
    max_price = request.max_price if request.max_price is not None else d.max_price
    return ResolvedRequest(
        service=request.service or d.service,
        country=request.country or d.country,
        providers=list(request.providers or settings.providers.order),
        max_price=Decimal(str(max_price)) if max_price is not None else None,
        device_profile=request.device_profile or settings.docker.default_profile,
        code_timeout_s=request.code_timeout_s or d.code_timeout_s,
        number_attempts=request.number_attempts or d.number_attempts,
        ttl_s=request.ttl_s or d.ttl_s,
    )
