"""The settings model and the one place that turns validation errors into start-up messages."""

from __future__ import annotations

import functools
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as SourceError

from provisioner.settings.env import ENV_NESTED_DELIMITER, ENV_PREFIX
from provisioner.settings.secrets import PrefectSecretsSource
from provisioner.values.canonical import COUNTRIES, SERVICES, check_country, check_service
from provisioner.values.money import Budget, Money

ProviderName = Literal["sms_man", "onlinesim", "sms_activate"]
PROVIDER_NAMES: tuple[str, ...] = ("sms_man", "onlinesim", "sms_activate")


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the environment variable to set."""


class DatabaseSettings(BaseModel):
    url: str = Field(description="SQLAlchemy URL of the PostgreSQL database (postgresql+psycopg://...)")
    pool_size: int = Field(
        5, ge=1, le=100, description="Connections each process keeps open to the database (SQLAlchemy pool)"
    )

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, value: str) -> str:
        if not re.match(r"^postgresql(\+psycopg)?://", value):
            raise ValueError("must be a PostgreSQL URL such as postgresql+psycopg://user:pass@host:5432/db")
        # psycopg 3 is the only driver we ship; a bare postgresql:// would pick psycopg2.
        return re.sub(r"^postgresql://", "postgresql+psycopg://", value)


class DockerSettings(BaseModel):
    host: str | None = Field(
        None, description="Docker engine URL; unset means DOCKER_HOST or the local socket"
    )
    network: str = Field("provisioner", description="User-defined network for this deployment's containers")
    publish_host: str = Field("127.0.0.1", description="Host address the stream port is published on")
    publish_streams: bool = Field(True, description="Publish each stream port on publish_host")
    launch_slots: int = Field(4, ge=1, description="Concurrent container launches allowed on this host")
    readiness_timeout_s: float | None = Field(
        None, gt=0, description="Overrides every profile's boot_timeout_s when set (and the stream's 30 s)"
    )
    profiles_file: Path | None = Field(None, description="YAML file of extra device image profiles")
    default_profile: str = Field("stub", description="Device profile of a request that names none")
    stream_image: str = Field(
        "provisioner/websockify:latest", description="Image of the stream container (websockify + noVNC)"
    )
    tls_ca: Path | None = Field(None, description="CA of `host`'s engine certificate (tcp:// with TLS)")
    tls_cert: Path | None = Field(None, description="Client certificate for `host`'s engine")
    tls_key: Path | None = Field(None, description="Key of tls_cert")
    insecure_plain_tcp: bool = Field(
        False, description="Allow `host` as plain tcp:// off this machine (labs only; warned on every start)"
    )
    egress_guard: bool = Field(
        True,
        description="Install each pair network's DOCKER-USER rules (private and link-local ranges, the host "
        "unreachable from a device) on every engine; off only where you keep them yourself (docs/security.md)",
    )


class ProviderSettings(BaseModel):
    api_key: SecretStr | None = Field(
        None, description="The account's API key; a provider without one is skipped"
    )
    base_url: str = Field(description="API base URL: the provider's, any compatible copy, or the simulator")
    timeout_s: float = Field(15.0, gt=0, description="HTTP timeout per provider call")
    currency: str | None = Field(
        None,
        pattern=r"^[A-Z]{3}$",
        description="Account currency (ISO 4217); unset = the protocol's usual one (SMS-MAN and OnlineSim USD, SMS-Activate RUB)",
    )
    services: dict[str, str] = Field(
        default_factory=dict,
        description='Canonical service -> this provider\'s code, over its catalog: {"telegram": "3"}',
    )
    countries: dict[str, str] = Field(
        default_factory=dict,
        description='ISO country -> this provider\'s code, over its catalog: {"KZ": "2"}',
    )

    @field_validator("services")
    @classmethod
    def _canonical_services(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SERVICES))
        if unknown:
            raise ValueError(
                f"unknown canonical service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}"
            )
        return value

    @field_validator("countries")
    @classmethod
    def _iso_countries(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(k for k in value if k.upper() not in COUNTRIES)
        if unknown:
            raise ValueError(f"unknown ISO 3166 alpha-2 code(s) {', '.join(unknown)}")
        return {k.upper(): v for k, v in value.items()}

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL")
        return value

    @property
    def configured(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())


# One subclass per provider so that setting only a key (…__API_KEY) keeps the default base URL.
class SmsManSettings(ProviderSettings):
    base_url: str = "https://api.sms-man.com/control/"


class OnlineSimSettings(ProviderSettings):
    base_url: str = "https://onlinesim.io/api/"


CANCEL_STATUS_CHOICES = ("8", "-1", "10", "6")


class SmsActivateSettings(ProviderSettings):
    # The original SMS-Activate hosts are gone; any compatible provider's handler_api.php URL works.
    base_url: str = "https://api.sms-activate.ae/stubs/handler_api.php"
    cancel_statuses: list[str] = Field(
        default_factory=lambda: ["8", "-1"],
        description="setStatus values that cancel (refund), tried in order; the protocol's are 8 then -1. "
        'OnlineSim\'s copy refunds on 6: set ["6"] there; 6 finishes (charges) elsewhere, so it is '
        "accepted only alone, never as a fallback",
    )

    @field_validator("cancel_statuses")
    @classmethod
    def _cancel_statuses(cls, value: list[str]) -> list[str]:
        if not value or any(status not in CANCEL_STATUS_CHOICES for status in value):
            raise ValueError(f"must be a non-empty list of {', '.join(CANCEL_STATUS_CHOICES)}")
        if "6" in value and value != ["6"]:
            raise ValueError('6 finishes at most providers: use it alone (["6"]) or not at all')
        return value


class ProvidersSettings(BaseModel):
    sms_man: SmsManSettings = SmsManSettings()
    onlinesim: OnlineSimSettings = OnlineSimSettings()
    sms_activate: SmsActivateSettings = SmsActivateSettings()
    order: list[ProviderName] = Field(
        default_factory=lambda: ["sms_man", "onlinesim", "sms_activate"],
        description="Fallback order; providers without an API key are skipped",
    )
    catalog_refresh_s: float = Field(
        86400.0,
        gt=0,
        description="Age after which reconcile refreshes a provider's catalog from its listings",
    )

    def get(self, name: str) -> ProviderSettings:
        if name not in PROVIDER_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def configured_names(self) -> list[str]:
        return [name for name in self.order if self.get(name).configured]


class DefaultsSettings(BaseModel):
    service: str = Field("telegram", description="Canonical service name, or <provider>:<code>")
    country: str = Field("RU", description="ISO 3166 alpha-2 country code, or <provider>:<code>")
    max_price: str | None = Field(None, description="Price cap with its currency, e.g. '0.50 USD'")
    code_timeout_s: float = Field(300.0, gt=0, description="How long to wait for the code on one number")
    number_attempts: int = Field(3, ge=1, le=10, description="Numbers tried before the provision fails")
    ttl_s: float = Field(
        3600.0, gt=0, description="Session lifetime; past it reconciliation releases it (expired)"
    )
    idle_timeout_s: float = Field(
        1800.0, gt=0, description="A verified session nobody used for this long is released (expired, idle)"
    )
    poll_initial_s: float = Field(
        1.0,
        gt=0,
        le=2.0,
        description="Wait between a flow's own code polls (no watcher beating) in the first 20 s of its wait",
    )
    poll_max_s: float = Field(10.0, gt=0, description="Longest wait between a flow's own code polls")

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        return _unechoed(check_service, value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        return _unechoed(check_country, value)

    @field_validator("max_price")
    @classmethod
    def _max_price(cls, value: str | None) -> str | None:
        return None if value in (None, "") else _unechoed(lambda v: str(Money.parse(v)), value)


def _unechoed(check, value: str):
    """`check(value)`; its error message without the value (settings errors never echo values)."""
    try:
        return check(value)
    except ValueError as exc:
        raise ValueError(str(exc).replace(f" {value!r}", "").replace(repr(value), "the value")) from None


class SpendSettings(BaseModel):
    """Money: the most a number may cost, daily budgets, the charge and balances checked
    (docs/money.md)."""

    max_price: str | None = Field(
        None,
        description="Ceiling: the most any number may cost, with its currency ('0.50 USD'); a request's "
        "max_price can only lower it, one above it is refused (422). Unset: no ceiling (warned)",
    )
    daily_budget: str | None = Field(
        None,
        description="Overall budget per calendar day in spend.timezone ('20 USD' or '20 USD/day'); each "
        "purchase reserves its cap against it. Unset: no overall budget",
    )
    timezone: str = Field("UTC", description="Time zone whose calendar days the budgets are counted in")
    allow_unquoted: bool = Field(
        False,
        description="Buy from a provider without a server-side price cap (OnlineSim) even when its price "
        "list has no quote for the offer",
    )
    low_balance: str | None = Field(
        None,
        description="A provider balance below this ('5 USD', converted through PROVISIONER_FX) emits the "
        "Prefect event provisioner.provider.balance.low once per crossing",
    )
    balance_interval_s: float = Field(
        60.0, ge=60, description="How often the watcher reads each provider account's balance (at least 60 s)"
    )

    @field_validator("max_price", "low_balance")
    @classmethod
    def _money(cls, value: str | None) -> str | None:
        return None if value in (None, "") else _unechoed(lambda v: str(Money.parse(v)), value)

    @field_validator("daily_budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        return None if value in (None, "") else _unechoed(lambda v: str(Budget.parse(v)), value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA time zone such as UTC or Europe/Berlin") from None
        return value


class ReconcileSettings(BaseModel):
    grace_s: float = Field(60.0, ge=0, description="Age before an unowned container is removed")
    provisioning_deadline_s: float = Field(
        120.0,
        ge=0,
        description="How long a provisioning session may wait for a flow run recorded, or known to Prefect",
    )
    heartbeat_interval_s: float = Field(
        10.0, gt=0, description="How often a running provision touches its session"
    )
    stale_after_s: float = Field(
        90.0,
        gt=0,
        description="A provision run Running with no sign of life this long (session heartbeat or change,"
        " entering Running) has lost its flow process",
    )
    device_grace_s: float = Field(
        60.0,
        ge=0,
        description="A device down this long (container missing, exited, paused, restarting; seen on two"
        " passes) is gone: its session orphaned, an idle device retired (reconciler.down)",
    )
    run_start_deadline_s: float = Field(
        300.0, gt=0, description="A provision run Scheduled this long was never taken by a worker"
    )
    run_pending_deadline_s: float = Field(
        60.0,
        gt=0,
        description="A provision run Pending this long (a worker took it, no process reached Running;"
        " from the state's timestamp on the Prefect server) is dead: ended and re-submitted",
    )
    unhealthy_grace_s: float = Field(
        30.0,
        ge=0,
        description="The device-down rule's grace for a device unhealthy (Docker HEALTHCHECK) since first seen down",
    )
    host_down_grace_s: float = Field(
        60.0, ge=0, description="A Docker host whose engine stays silent this long is marked down"
    )

    lease_retries: int = Field(
        5, ge=1, description="Failed lookups (unknown purchase) or closes of a lease before needs_attention"
    )
    lease_retry_s: float = Field(30.0, gt=0, description="First backoff between those retries; doubles")
    lease_retry_max_s: float = Field(1800.0, gt=0, description="Longest backoff between those retries")


class PoolSettings(BaseModel):
    warm: dict[str, int] | None = Field(
        None,
        description='Fewest idle devices to keep per host and profile, a JSON map such as {"stub-slow": 2}; '
        "overrides the profiles' warm: entries (a profile absent from the map keeps none)",
    )
    max: dict[str, int] | None = Field(
        None,
        description="Most idle devices per host demand may grow a profile's pool to, a JSON map such as "
        '{"stub-slow": 10}; overrides the profiles\' warm_max: entries (a profile absent keeps a fixed warm)',
    )
    capacity: int = Field(20, ge=0, description="Most devices (any state but ended) per Docker host")
    demand_window_s: float = Field(
        600.0, gt=0, description="Demand is the devices claimed (warm or cold-booted) over this window"
    )
    headroom: float = Field(
        0.5,
        ge=0,
        description="Idle devices kept beyond the claims expected during one p90 boot, as a fraction of them",
    )
    boot_samples: int = Field(
        20, ge=1, description="A profile's boot time is the p90 of its last this many boots"
    )
    cool_down_s: float = Field(
        300.0,
        ge=0,
        description="An idle device beyond the pool's target is retired only once idle this long",
    )

    @field_validator("warm", "max")
    @classmethod
    def _non_negative(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and any(n < 0 for n in value.values()):
            raise ValueError("counts must be >= 0")
        return value


class HostEngineSettings(BaseModel):
    """One host's engine TLS files on this machine, over what `provisioner hosts add` recorded."""

    model_config = ConfigDict(extra="forbid")

    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


class HostsSettings(BaseModel):
    """Several Docker hosts (the hosts table): where a device's launch runs.

    PROVISIONER_HOSTS__<NAME>__TLS_CA, __TLS_CERT, __TLS_KEY name a host's TLS files on this
    machine, over the paths the hosts table records (docs/security.md)."""

    model_config = ConfigDict(extra="allow")

    dispatch: Literal["queue", "process"] = Field(
        "queue",
        description="queue: a flow run started from a deployment launches each device as a "
        "launch-device run on its host's work queue host-<name>; process: the calling process "
        "launches over the host's Docker URL (direct flow calls always do)",
    )
    launch_start_s: float = Field(
        60.0,
        gt=0,
        description="How long a host's worker may take to pick up and start a launch run, on top "
        "of the profile's boot timeout",
    )

    @model_validator(mode="after")
    def _host_engines(self) -> HostsSettings:
        for name, value in (self.model_extra or {}).items():
            self.model_extra[name] = HostEngineSettings.model_validate(value)
        return self

    def engine(self, name: str) -> HostEngineSettings | None:
        """This machine's TLS files for host `name`, when its PROVISIONER_HOSTS__<NAME>__TLS_* are set."""
        found = (self.model_extra or {}).get(name.lower())
        return found if isinstance(found, HostEngineSettings) else None


class CodesSettings(BaseModel):
    """The code watcher (`provisioner watch`), provider webhooks, and how flows wait for codes."""

    poll_interval_s: float = Field(2.0, gt=0, description="Watcher: one listing call (or round) per interval")
    requests_per_s: float = Field(
        5.0, gt=0, description="Watcher: request budget per provider (token bucket rate)"
    )
    burst: int = Field(5, ge=1, description="Watcher: token bucket size per provider")
    heartbeat_s: float = Field(2.0, gt=0, description="Watcher: how often the lock holder beats")
    stale_after_s: float = Field(
        10.0, gt=0, description="A watcher silent this long is dead: flows poll their own lease"
    )
    standby_retry_s: float = Field(1.0, gt=0, description="Watcher: how often a standby tries the lock")
    webhook_secret: SecretStr | None = Field(
        None, description="Secret path segment of POST /webhooks/{provider}/{secret}; unset = webhooks off"
    )
    webhook_max_bytes: int = Field(16384, ge=256, description="Largest webhook body accepted")
    keep_number_open: bool = Field(
        False,
        description="Leave the number open after verification so the session can ask for another code "
        "(POST /sessions/{id}/code); it is finished at release",
    )


class ClientsSettings(BaseModel):
    """Limits a new client gets unless `provisioner clients add` says otherwise."""

    max_sessions: int | None = Field(5, ge=1, description="Live sessions a new client may hold at once")
    rate_per_min: int | None = Field(
        30, ge=1, description="Sessions a new client may start per minute (past it: 429 with Retry-After)"
    )


class GatewaySettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address python -m provisioner.gateway listens on")
    port: int = Field(8080, description="Port python -m provisioner.gateway listens on")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Gateway processes sharing the port (uvicorn workers): each relays its own streams "
        "on its own core; all state is in the database, only caches are per process",
    )
    token: SecretStr | None = Field(
        None, description="An operator's bearer token (client tokens: `provisioner clients add`)"
    )
    public_url: str = Field("http://127.0.0.1:8080", description="Base URL browsers use to reach the gateway")
    insecure_no_auth: bool = Field(
        False,
        description="Serve everyone without a token; only allowed when the gateway binds a loopback address",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names accepted in the Host header besides the public URL's and loopback "
        '(e.g. ["gateway"] for a service name), as JSON',
    )
    link_secret: SecretStr | None = Field(
        None,
        description="Key of the signed session links (HMAC); unset: derived from the gateway token. "
        "The gateway and every worker must share it",
    )
    route_keep_s: float = Field(
        60.0,
        ge=0,
        description="How long a live session's last known stream route serves while the database is down",
    )
    prefect_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest wait for the Prefect API to create or cancel a run; past it the request "
        "answers 503 with Retry-After (a retry with the same Idempotency-Key finds the same run)",
    )
    activity_write_s: float = Field(
        30.0,
        gt=0,
        description="At most one last-activity write per session this often while its stream is open",
    )
    run_on: Literal["executor", "worker"] = Field(
        "executor",
        description="Where provisions started through the API run: `executor` (deployment "
        "provision/executor, a thread of `provisioner executor` per run) or `worker` (deployment "
        "provision/provision, a process of the process worker per run). Reconciliation's re-runs "
        "follow it",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # Docker/Kubernetes secrets: one file per variable, e.g. /run/secrets/PROVISIONER_GATEWAY__TOKEN.
        secrets_dir=os.environ.get("PROVISIONER_SECRETS_DIR", "/run/secrets"),
        secrets_dir_missing="ok",
        secrets_nested_delimiter=ENV_NESTED_DELIMITER,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest first: arguments, the environment, .env, the secrets directory, Prefect Secret blocks."""
        secrets_dir = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, dotenv_settings, secrets_dir, PrefectSecretsSource(settings_cls)

    instance_id: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,30}$",
        description="Deployment instance id. The first `provisioner migrate` records it in the database "
        "(generated when unset); every process then runs as the database's id and refuses to start when "
        "this names another. Containers carry it so deployments never touch each other's",
    )
    database: DatabaseSettings
    docker: DockerSettings = DockerSettings()
    providers: ProvidersSettings = ProvidersSettings()
    defaults: DefaultsSettings = DefaultsSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    pool: PoolSettings = PoolSettings()
    hosts: HostsSettings = HostsSettings()
    gateway: GatewaySettings = GatewaySettings()
    clients: ClientsSettings = ClientsSettings()
    codes: CodesSettings = CodesSettings()
    spend: SpendSettings = SpendSettings()
    fx: dict[str, Decimal] = Field(
        default_factory=dict,
        description='Exchange rates: each currency\'s value in USD, e.g. {"RUB": "0.011"}; a provider billing in '
        "a currency the price cap is not in is skipped unless both have a rate",
    )

    @field_validator("instance_id", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        # compose passes "${PROVISIONER_INSTANCE_ID:-}": empty means unset (the database's id).
        return None if value == "" else value

    @field_validator("fx")
    @classmethod
    def _rates(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        bad = sorted(k for k, v in value.items() if not re.match(r"^[A-Za-z]{3}$", k) or v <= 0)
        if bad:
            raise ValueError(f"rates must be positive and keyed by ISO 4217 codes: {', '.join(bad)}")
        return {k.upper(): v for k, v in value.items()}


def env_var_for(loc: tuple[int | str, ...]) -> str:
    """The environment variable that sets the field at a validation error location."""
    parts = [str(part) for part in loc if not isinstance(part, int)]
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(part.upper() for part in parts)


def _required_leaves(loc: tuple[int | str, ...]) -> list[str]:
    """A missing nested group is reported as the variables of its required fields."""
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return [env_var_for(loc)]
        model = annotation
    return [env_var_for((*loc, name)) for name, f in model.model_fields.items() if f.is_required()]


def load_settings(**overrides: object) -> Settings:
    """Read settings now, raising SettingsError with one line per bad or missing variable."""
    try:
        return Settings(**overrides)
    except SourceError as exc:  # a top-level JSON value (PROVISIONER_FX) that does not parse
        field = re.search(r'field "([^"]+)"', str(exc))
        variable = env_var_for((field.group(1),)) if field else "a PROVISIONER_* variable"
        raise SettingsError(f"provisioner settings: {variable} is invalid: not valid JSON") from None
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            variable = env_var_for(error["loc"])
            if error["type"] == "missing":
                lines.extend(f"{name} is not set" for name in _required_leaves(error["loc"]))
            else:
                # Never echo the input: it may be a key.
                lines.append(f"{variable} is invalid: {error['msg']}")
        raise SettingsError("provisioner settings: " + "; ".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
