"""The provision request: the flow's parameters (rendered as a form in the Prefect UI) and the
gateway's POST body. Business inputs only, never secrets; unset fields take the settings' defaults.

The run form's JSON schema (``form_schema``) shows those defaults as the fields' starting values,
resolved from the settings where the schema is made (``prefect deploy``), offers the device
profiles and providers as choice lists (providers in the configured fallback order) and has no
"None" alternatives: an empty field is simply not sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_settings import BaseSettings, SettingsConfigDict

from provisioner.runtime.profiles import load_profiles
from provisioner.settings import Settings
from provisioner.settings.model import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    PROVIDER_NAMES,
    DefaultsSettings,
    DockerSettings,
    ProvidersSettings,
    SpendSettings,
)
from provisioner.steps.spend import effective_cap
from provisioner.values.canonical import COUNTRIES, PROVIDER_CODE, SERVICES, check_country, check_service
from provisioner.values.money import Money


def _known_provider(value: object) -> object:
    """Names the unknown provider (the choice list alone would not say which one it was)."""
    if isinstance(value, str) and value not in PROVIDER_NAMES:
        raise ValueError(f"unknown provider {value!r}; one of {', '.join(PROVIDER_NAMES)}")
    return value


ProviderChoice = Annotated[Literal["sms_man", "onlinesim", "sms_activate"], BeforeValidator(_known_provider)]
PROVIDERS_MAX = 10
SERVICE_MAX, COUNTRY_MAX, PROFILE_MAX = 64, 16, 64  # the sessions table's columns


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
    str | None,
    Field(max_length=SERVICE_MAX),
    AfterValidator(_optional(check_service)),
    _choices("Service", list(SERVICES)),
]
CountryCode = Annotated[
    str | None,
    Field(max_length=COUNTRY_MAX),
    AfterValidator(_optional(check_country)),
    _choices("Country", list(COUNTRIES)),
]
PriceCap = Annotated[
    str | None,
    BeforeValidator(_optional(lambda v: str(Money.parse(v)))),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": r"^\d{1,8}(\.\d{1,4})?\s*[A-Za-z]{3}$"}, {"type": "null"}]}
    ),
]


class FormSettings(BaseSettings):
    """The settings the run form's defaults come from; unlike Settings it needs no database URL,
    so `prefect deploy` can resolve them anywhere."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )
    docker: DockerSettings = DockerSettings()
    providers: ProvidersSettings = ProvidersSettings()
    defaults: DefaultsSettings = DefaultsSettings()
    spend: SpendSettings = SpendSettings()


def form_defaults() -> dict[str, object]:
    """The values the run form starts from: the configured defaults, here and now."""
    s = FormSettings()
    values: dict[str, object] = {
        "service": s.defaults.service,
        "country": s.defaults.country,
        # The providers with a key, in fallback order (all of them when no key is seen here).
        "providers": s.providers.configured_names() or list(s.providers.order),
        "device_profile": s.docker.default_profile,
        "code_timeout_s": s.defaults.code_timeout_s,
        "number_attempts": s.defaults.number_attempts,
        "ttl_s": s.defaults.ttl_s,
        "idle_timeout_s": s.defaults.idle_timeout_s,
    }
    if s.defaults.max_price is not None:
        values["max_price"] = s.defaults.max_price
    return values


def profile_choices() -> list[str]:
    """Device profile names, the configured default first."""
    s = FormSettings()
    try:
        names = sorted(load_profiles(s.docker.profiles_file))
    except (OSError, ValueError):  # an unreadable extra file: offer the shipped ones
        names = sorted(load_profiles())
    default = s.docker.default_profile
    return [default, *(n for n in names if n != default)]


def _unique(names: list[str] | None) -> list[str] | None:
    if names is not None and len(set(names)) != len(names):
        raise ValueError("each provider at most once")
    return names


def _without_null(prop: dict) -> None:
    """`X | None` fields: drop the "null" alternative (the UI's "None" chip); empty = not sent."""
    options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
    if "anyOf" in prop:
        del prop["anyOf"]
        if len(options) == 1:
            prop.update(options[0])
        else:
            prop["anyOf"] = options
    if prop.get("default", ...) is None:
        del prop["default"]


def form_schema(schema: dict) -> None:
    """JSON schema hook: real defaults, choice lists, no None alternatives, fields in declared
    order (`position`, which the UI sorts by: Prefect on PostgreSQL keeps the schema as JSONB,
    whose keys come back shortest first)."""
    properties = schema.get("properties", {})
    for position, prop in enumerate(properties.values()):
        _without_null(prop)
        prop["position"] = position
    for name, value in form_defaults().items():
        if name in properties:
            properties[name]["default"] = value
    order = list(FormSettings().providers.order)
    providers = properties.get("providers")
    if providers is not None:
        providers["items"] = {"type": "string", "enum": order + [n for n in PROVIDER_NAMES if n not in order]}
        providers["uniqueItems"] = True
    profile = properties.get("device_profile")
    if profile is not None:
        profile["enum"] = profile_choices()


class ProvisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Provision request", json_schema_extra=form_schema)

    service: ServiceName = Field(
        None,
        description="Service to verify (telegram, whatsapp, ...), mapped to each provider's own code; "
        "or one provider's own code as PROVIDER:CODE (sms_activate:tg), sent to that provider only; "
        "empty = the configured default",
    )
    country: CountryCode = Field(
        None,
        description="Country of the number, ISO 3166 alpha-2 (RU, KZ, GB, ...), mapped to each "
        "provider's own code; or PROVIDER:CODE (sms_activate:0); empty = the configured default",
    )
    providers: Annotated[list[ProviderChoice] | None, AfterValidator(_unique)] = Field(
        None,
        max_length=PROVIDERS_MAX,
        title="Providers, in fallback order",
        description="Tried in this order until one sells a number; empty = the configured order",
    )
    max_price: PriceCap = Field(
        None,
        description="Highest price to pay for a number, with its currency ('0.50 USD'); it can only lower "
        "the configured ceiling (PROVISIONER_SPEND__MAX_PRICE); providers billing in another currency are "
        "compared through PROVISIONER_FX or skipped",
    )
    device_profile: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        max_length=PROFILE_MAX,
        title="Device profile",
        description="Device image profile (stub: a VNC stand-in; android: the emulator); empty = the configured default",
    )
    code_timeout_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        title="Code timeout (seconds)",
        description="How long to wait for the verification code on each number",
    )
    number_attempts: int | None = Field(
        None,
        ge=1,
        le=10,
        title="Numbers to try",
        description="How many numbers to rent, one after the other, before giving up",
    )
    ttl_s: float | None = Field(
        None,
        gt=0,
        le=7 * 24 * 3600,
        title="Session lifetime (seconds)",
        description="How long the session stays live before reconciliation expires and releases it",
    )
    idle_timeout_s: float | None = Field(
        None,
        gt=0,
        le=7 * 24 * 3600,
        title="Idle timeout (seconds)",
        description="Release a verified session nobody used (no input, no open stream) for this long",
    )


@dataclass(frozen=True)
class RentRequest:
    """What a number is rented for: the canonical service and country, the providers to try in
    order, the effective price cap (None: no cap)."""

    service: str
    country: str
    providers: tuple[str, ...]
    max_price: Money | None = None


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
    idle_timeout_s: float

    @property
    def rent(self) -> RentRequest:
        return RentRequest(self.service, self.country, tuple(self.providers), self.max_price)


def _money(value: str | None) -> Money | None:
    return Money.parse(value) if value is not None else None


def price_cap(request: ProvisionRequest, settings: Settings) -> Money | None:
    """The effective cap (steps.spend.effective_cap): raises AboveCeiling, NoRate."""
    return effective_cap(
        _money(settings.spend.max_price),
        _money(request.max_price),
        _money(settings.defaults.max_price),
        settings.fx,
    )


def resolve(request: ProvisionRequest, settings: Settings) -> ResolvedRequest:
    d = settings.defaults
    return ResolvedRequest(
        service=request.service or d.service,
        country=request.country or d.country,
        providers=list(request.providers or settings.providers.order),
        max_price=price_cap(request, settings),
        device_profile=request.device_profile or settings.docker.default_profile,
        code_timeout_s=request.code_timeout_s or d.code_timeout_s,
        number_attempts=request.number_attempts or d.number_attempts,
        ttl_s=request.ttl_s or d.ttl_s,
        idle_timeout_s=request.idle_timeout_s or d.idle_timeout_s,
    )
