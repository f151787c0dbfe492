"""The provision request: the flow's parameters (rendered as a form in the Prefect UI) and the
gateway's POST body. Business inputs only, never secrets; unset fields take the settings' defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from providers.canonical import COUNTRIES, PROVIDER_CODE, SERVICES, check_country, check_service
from providers.money import Money
from settings import Settings

ProviderChoice = Literal["sms_man", "onlinesim", "sms_activate"]


def _optional(check):
    return lambda value: None if value in (None, "") else check(value)


def _choices(title: str, names: list[str]) -> WithJsonSchema:
    """A choice list in the Prefect form, or a provider's own code as `<provider>:<code>`."""
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "title": title, "enum": names},
                {"type": "string", "title": "Provider's own code", "pattern": PROVIDER_CODE.pattern},
                {"type": "null"},
            ]
        }
    )


ServiceName = Annotated[
    str | None, AfterValidator(_optional(check_service)), _choices("Service", list(SERVICES))
]
CountryCode = Annotated[
    str | None, AfterValidator(_optional(check_country)), _choices("Country", list(COUNTRIES))
]
PriceCap = Annotated[
    str | None,
    BeforeValidator(_optional(lambda v: str(Money.parse(v)))),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*[A-Za-z]{3}$"}, {"type": "null"}]}
    ),
]


class ProvisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Provision request")

    service: ServiceName = Field(
        None,
        description="Service to verify (telegram, whatsapp, ...), mapped to each provider's own code; "
        "or one provider's own code as <provider>:<code> (sms_activate:tg), sent to that provider only; "
        "empty = the configured default",
    )
    country: CountryCode = Field(
        None,
        description="Country of the number, ISO 3166 alpha-2 (RU, KZ, GB, ...), mapped to each "
        "provider's own code; or <provider>:<code>; empty = the configured default",
    )
    providers: list[ProviderChoice] | None = Field(
        None, description="Providers to try, in fallback order; empty = the configured order"
    )
    max_price: PriceCap = Field(
        None,
        description="Highest price to pay for a number, with its currency ('0.50 USD'); providers billing "
        "in another currency are compared through PROVISIONER_FX or skipped",
    )
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
    max_price: Money | None
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
        max_price=Money.parse(max_price) if max_price is not None else None,
        device_profile=request.device_profile or settings.docker.default_profile,
        code_timeout_s=request.code_timeout_s or d.code_timeout_s,
        number_attempts=request.number_attempts or d.number_attempts,
        ttl_s=request.ttl_s or d.ttl_s,
    )
