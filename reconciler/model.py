"""What one reconciliation pass observes, and the actions it may take: small typed values."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from store import State


@dataclass(frozen=True)
class SessionView:
    id: str
    state: State
    flow_run_id: str | None
    updated_at: datetime
    expires_at: datetime | None
    has_code: bool
    heartbeat_at: datetime | None = None


@dataclass(frozen=True)
class LeaseView:
    id: int
    session_id: str
    provider: str
    activation_id: str | None
    outcome: str
    requested_at: datetime
    retry_after: datetime | None


@dataclass(frozen=True)
class ContainerView:
    id: str
    name: str
    session_id: str
    role: str  # device | stream
    state: str  # running, exited, created, ...
    created_at: datetime | None


# Prefect flow run state types in which the run is still in charge of its session.
FLOW_RUN_ALIVE = frozenset({"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"})


@dataclass(frozen=True)
class Observed:
    now: datetime
    sessions: list[SessionView]  # every non-terminal session
    leases: list[LeaseView]  # every open lease
    containers: list[ContainerView]  # every managed container of this deployment
    flow_runs: dict[str, str | None]  # flow run id -> state type, None when the run does not exist


class Kind(enum.StrEnum):
    HEAL_STREAM = "heal_stream"
    ORPHAN_SESSION = "orphan_session"
    REMOVE_CONTAINER = "remove_container"
    COMPENSATE_SESSION = "compensate_session"
    EXPIRE_SESSION = "expire_session"
    CLOSE_LEASE = "close_lease"
    RESOLVE_PENDING_LEASE = "resolve_pending_lease"
    FINISH_RELEASE = "finish_release"


class Reason(enum.StrEnum):
    STREAM_MISSING = "stream container missing"
    STREAM_STOPPED = "stream container not running"
    DEVICE_MISSING = "device container missing"
    DEVICE_STOPPED = "device container not running"
    SESSION_TERMINAL = "its session has ended"
    SESSION_UNKNOWN = "no such session"
    FLOW_RUN_GONE = "its provision flow run no longer runs"
    TTL_PASSED = "ttl passed"
    LEASE_ON_ENDED_SESSION = "number still open on an ended session"
    CANCEL_RETRY = "cancel refused earlier as too early; retrying"
    PURCHASE_UNKNOWN = "purchase recorded as pending with no result"
    RELEASE_STALLED = "its release stopped half-way"


@dataclass(frozen=True)
class Action:
    kind: Kind
    reason: str
    session_id: str | None = None
    container_id: str | None = None
    container_name: str | None = None
    lease_id: int | None = None
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        if self.container_name:
            return self.container_name
        if self.lease_id is not None:
            return f"lease {self.lease_id}"
        return self.session_id or "-"
