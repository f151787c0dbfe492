"""Typed SQLAlchemy models: sessions, the numbers rented for them, and their event log."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from provisioner.store.device_states import DeviceState
from provisioner.store.lease_states import (  # noqa: F401 (defined beside their table)
    ATTENTION_LEASE_OUTCOMES,
    OPEN_LEASE_OUTCOMES,
    LeaseOutcome,
)
from provisioner.store.states import State

# Lowercase letters and digits without look-alikes; ids start with a letter so they are valid
# DNS labels and container names. 12 characters ~ 61 bits: unguessable for a URL.
_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_ID_FIRST = "abcdefghijkmnpqrstuvwxyz"
SESSION_ID_PATTERN = r"^[a-z][a-z0-9]{11}$"
CLIENT_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
# The owner of sessions whose provision run was started from Prefect's UI or API (not a client).
PREFECT_OWNER = "prefect"
# The client the configured gateway token (PROVISIONER_GATEWAY__TOKEN) speaks for.
TOKEN_OPERATOR = "operator"


def new_session_id() -> str:
    return secrets.choice(_ID_FIRST) + "".join(secrets.choice(_ID_ALPHABET) for _ in range(11))


class Base(DeclarativeBase):
    pass


def _tz_now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(12), primary_key=True, default=new_session_id)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default=State.REQUESTED.value)
    service: Mapped[str] = mapped_column(String(64), nullable=False)
    country: Mapped[str] = mapped_column(String(16), nullable=False)
    device_profile: Mapped[str] = mapped_column(String(64), nullable=False, server_default="stub")
    provider: Mapped[str | None] = mapped_column(String(32))
    phone_number: Mapped[str | None] = mapped_column(String(32))
    verification_code: Mapped[str | None] = mapped_column(String(64))
    device_container: Mapped[str | None] = mapped_column(String(128))
    stream_container: Mapped[str | None] = mapped_column(String(128))
    stream_url: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _tz_now()
    updated_at: Mapped[datetime] = _tz_now()
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Touched by the running provision flow; a stale heartbeat means its process died.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    # The accepted provision request, who asked and under which idempotency key: written by the
    # gateway before any flow run exists, so an accepted request is never lost.
    request: Mapped[dict | None] = mapped_column(JSONB)
    requested_by: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(256))
    # Provision flow runs created for this session (the gateway's first, reconciliation's re-submit).
    submissions: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default=text("1"))
    # The device this session holds (claimed from the pool or cold-booted for it); at most one session each.
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
    # A verified session nobody used for this long is released (expired, reason idle).
    idle_timeout_s: Mapped[float | None] = mapped_column(Float)
    # The client that asked for it (clients.name); runs started from Prefect's UI or API: "prefect".
    owner: Mapped[str] = mapped_column(String(32), nullable=False, server_default=PREFECT_OWNER)

    leases: Mapped[list[LeaseRow]] = relationship(back_populates="session", order_by="LeaseRow.id")
    events: Mapped[list[EventRow]] = relationship(back_populates="session", order_by="EventRow.id")

    __table_args__ = (
        Index("ix_sessions_state", "state"),
        Index("ux_sessions_idempotency_key", "idempotency_key", unique=True),
        Index("ix_sessions_flow_run_id", "flow_run_id"),
        Index("ux_sessions_device_id", "device_id", unique=True),
        Index("ix_sessions_owner_created_at", "owner", "created_at"),
    )


class LeaseRow(Base):
    __tablename__ = "number_leases"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    service: Mapped[str] = mapped_column(String(64), nullable=False)
    country: Mapped[str] = mapped_column(String(16), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    activation_id: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str | None] = mapped_column(String(32))
    price: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    currency: Mapped[str | None] = mapped_column(String(8))
    requested_at: Mapped[datetime] = _tz_now()
    bought_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retry_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(32), nullable=False, default=LeaseOutcome.PENDING.value)
    provider_status: Mapped[str | None] = mapped_column(String(200))
    # The latest code, written once per SMS by steps.codes.record_code (watcher, webhook or poll).
    code: Mapped[str | None] = mapped_column(String(64))
    code_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Failed lookups (unknown purchase) or closes (cancel_pending) so far; bounded, then needs_attention.
    retries: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    # When the purchase call gave up without a clear answer: the end of its time window.
    call_ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Why a person should look at this lease (set with needs_attention, or on an unknown purchase
    # that cannot be looked up); empty otherwise.
    attention: Mapped[str | None] = mapped_column(Text)
    # The session's owner (budgets count by it); the effective cap in the account's currency (what
    # a purchase not settled yet reserves); where `price` came from (reply, quote or cap); charged
    # above the cap (cancelled at once).
    owner: Mapped[str | None] = mapped_column(String(32))
    cap: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    price_source: Mapped[str | None] = mapped_column(String(16))
    overcharged: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("false")
    )

    session: Mapped[SessionRow] = relationship(back_populates="leases")

    __table_args__ = (
        Index("ix_number_leases_session_id", "session_id"),
        Index("ix_number_leases_outcome", "outcome"),
        Index("ix_number_leases_requested_at", "requested_at"),
    )


class EventRow(Base):
    __tablename__ = "session_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False)
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    at: Mapped[datetime] = _tz_now()

    session: Mapped[SessionRow] = relationship(back_populates="events")

    __table_args__ = (Index("ix_session_events_session_id", "session_id"),)


class CodeWatcherRow(Base):
    """The heartbeat of the code watcher polling one provider (the holder of its advisory lock)."""

    __tablename__ = "code_watchers"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    watcher: Mapped[str] = mapped_column(String(128), nullable=False)  # host:pid of the holder
    mode: Mapped[str] = mapped_column(String(16), nullable=False)  # list | each
    started_at: Mapped[datetime] = _tz_now()
    beat_at: Mapped[datetime] = _tz_now()


class CatalogRow(Base):
    """A provider's learned catalog (see providers.catalog), refreshed from its listing endpoints."""

    __tablename__ = "provider_catalogs"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    data: Mapped[dict] = mapped_column(JSONB, nullable=False)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


HOST_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"  # also names its Prefect work queue, host-<name>


class HostRow(Base):
    """A Docker host devices run on: its engine URL, the address the gateway reaches its
    published stream ports on, its capacity in cores and memory, and its state (store.host_states)."""

    __tablename__ = "hosts"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    docker_url: Mapped[str] = mapped_column(Text, nullable=False)
    stream_address: Mapped[str] = mapped_column(String(255), nullable=False)
    # Paths of the engine's TLS files on the machines that call it (runtime.engines).
    tls_ca: Mapped[str | None] = mapped_column(Text)
    tls_cert: Mapped[str | None] = mapped_column(Text)
    tls_key: Mapped[str | None] = mapped_column(Text)
    insecure_plain_tcp: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )
    cpus: Mapped[float] = mapped_column(Float, nullable=False)
    memory_mb: Mapped[int] = mapped_column(Integer, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    reason: Mapped[str | None] = mapped_column(Text)  # why it reached its current state
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # engine answered
    down_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # first unanswered pass
    created_at: Mapped[datetime] = _tz_now()
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default=text("1"))


class DeviceRow(Base):
    """A device (its device and stream containers) on one Docker host; which session holds it is
    sessions.device_id. Container labels name the device id (they are fixed at creation)."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(12), primary_key=True, default=new_session_id)
    profile: Mapped[str] = mapped_column(String(64), nullable=False)
    host: Mapped[str] = mapped_column(String(200), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=DeviceState.BOOTING.value)
    device_container: Mapped[str] = mapped_column(String(128), nullable=False)
    stream_container: Mapped[str] = mapped_column(String(128), nullable=False)
    stream_url: Mapped[str | None] = mapped_column(Text)  # the published port, for local runs
    # host:port the gateway reaches the stream at, recorded where the device boots and heals.
    stream_route: Mapped[str | None] = mapped_column(String(255))
    # What the stream (HTTP Basic) and the device's VNC server (password) require: gateway.rfb.
    stream_secret: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _tz_now()
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    boot_s: Mapped[float | None] = mapped_column(Float)  # launch -> device and stream ready
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When reconciliation first saw it down, and as what (missing, exited, paused, restarting,
    # unhealthy, ...): reconciler.down. None: up.
    down_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    down_condition: Mapped[str | None] = mapped_column(String(16))
    last_activity_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)  # why it reached its current state
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default=text("1"))

    __table_args__ = (
        Index("ix_devices_state_profile", "state", "profile"),
        Index("ix_devices_claimed_at", "claimed_at"),
        Index(
            "ix_devices_profile_ready_at",
            "profile",
            "ready_at",
            postgresql_where=text("boot_s IS NOT NULL AND ready_at IS NOT NULL"),
        ),
    )


class ReconcileCountRow(Base):
    """How many actions of one kind (reconciler.model.Kind) reconcile passes have taken, done and
    failed, summed over every pass; the gateway's /metrics reads them (store.reconcile_counts)."""

    __tablename__ = "reconcile_action_counts"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    done: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[datetime] = _tz_now()


class ClientRow(Base):
    """Who may call the gateway: a name, a role (store.clients.Role), the SHA-256 of its token
    (never the token), its limits; revoked clients are kept (their sessions still name them)."""

    __tablename__ = "clients"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    max_sessions: Mapped[int | None] = mapped_column(Integer)  # live at once; None: no limit
    rate_per_min: Mapped[int | None] = mapped_column(Integer)  # sessions started a minute; None: no limit
    created_at: Mapped[datetime] = _tz_now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ux_clients_token_hash", "token_hash", unique=True),)


class DeploymentRow(Base):
    """This deployment's identity (one row, id 1): the instance id its containers are labelled
    with, generated or named by the first `provisioner migrate` (store.identity)."""

    __tablename__ = "deployment"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=1)
    instance_id: Mapped[str] = mapped_column(String(31), nullable=False)
    created_at: Mapped[datetime] = _tz_now()

    __table_args__ = (CheckConstraint("id = 1", name="ck_deployment_one_row"),)


class BudgetRow(Base):
    """A daily budget per owner (a client's name, or operator / prefect): what its purchases may
    charge and reserve per calendar day in PROVISIONER_SPEND__TIMEZONE (store.spend)."""

    __tablename__ = "budgets"

    owner: Mapped[str] = mapped_column(String(32), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 4), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    updated_at: Mapped[datetime] = _tz_now()


class ProviderAccountRow(Base):
    """A provider account as last read: the currency the provider reports for it (None: the
    protocol does not say), its balance, whether it is below PROVISIONER_SPEND__LOW_BALANCE, and
    the last read's error."""

    __tablename__ = "provider_accounts"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    currency: Mapped[str | None] = mapped_column(String(8))
    currency_source: Mapped[str | None] = mapped_column(String(32))
    balance: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    balance_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    low: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=text("false"))
    error: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime] = _tz_now()
