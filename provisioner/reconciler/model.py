"""What one reconciliation pass observes, and the actions it may take: small typed values."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from provisioner.store import LIVE, State


@dataclass(frozen=True)
class SessionView:
    id: str
    state: State
    flow_run_id: str | None
    updated_at: datetime
    expires_at: datetime | None
    has_code: bool
    heartbeat_at: datetime | None = None
    submissions: int = 1  # provision flow runs created for it so far
    has_request: bool = False  # written by the gateway: it can be re-submitted as it was asked
    device_id: str | None = None  # the device the session holds
    idle_timeout_s: float | None = None
    idle_since: datetime | None = None  # last screen activity, or the last change of the session
    device_ended_at: datetime | None = None  # its device's row ended (retired, failed) at


@dataclass(frozen=True)
class DeviceView:
    id: str
    state: str  # a non-terminal DeviceState
    profile: str
    session_id: str | None  # the session holding it
    down_since: datetime | None = None  # the first pass that saw it down (devices.down_since)
    down_condition: str | None = None  # what that pass saw (reconciler.down.device_condition)
    host: str | None = None  # the Docker host it runs on (the hosts table's name, or the engine URL)
    routed: bool = True  # its stream route is recorded (devices.stream_route: the gateway's route)


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
    device_id: str
    role: str  # device | stream
    state: str  # running, exited, created, ...
    created_at: datetime | None
    health: str | None = None  # healthy, unhealthy, starting (Docker HEALTHCHECK); None without one


@dataclass(frozen=True)
class NetworkView:
    """A device's pair network (runtime.isolation) as an engine listed it."""

    name: str
    device_id: str
    created_at: datetime | None
    guarded: bool | None = None  # its egress rules are all installed; None: not checked this pass


# Prefect flow run state types in which the run is still in charge of its session.
FLOW_RUN_ALIVE = frozenset({"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"})
# ... of which these have not started their work yet (no worker took them, or it is starting them).
FLOW_RUN_NOT_STARTED = frozenset({"SCHEDULED", "PENDING"})


@dataclass(frozen=True)
class RunDetail:
    """What Prefect says about a flow run beyond its state type."""

    since: datetime | None  # when it entered its current state
    message: str | None  # the state's message (a crash's cause)
    started: bool = True  # it ever entered Running (False: its worker failed to start it)


@dataclass(frozen=True)
class StrayRun:
    """A provision flow run Prefect still calls alive whose session has ended."""

    run_id: str
    state: str  # state type
    session_id: str
    session_state: State
    ended_at: datetime  # the session's last change


@dataclass(frozen=True)
class Observed:
    now: datetime
    sessions: list[SessionView]  # every non-terminal session
    leases: list[LeaseView]  # every open lease
    containers: list[ContainerView]  # every managed container of this deployment
    flow_runs: dict[str, str | None]  # flow run id -> state type, None when the run does not exist
    run_details: dict[str, RunDetail] = field(default_factory=dict)  # flow run id -> since, message
    stray_runs: list[StrayRun] = field(default_factory=list)
    devices: list[DeviceView] = field(default_factory=list)  # every non-terminal device
    networks: list[NetworkView] = field(default_factory=list)  # every pair network of this instance
    # Hosts whose engine did not answer this pass: down (past the host-down grace; the hosts table
    # says down) or late (still within it). Their containers and networks are not listed.
    down_hosts: frozenset[str] = frozenset()
    late_hosts: frozenset[str] = frozenset()
    stray_guards: list[str] = field(default_factory=list)  # networks gone whose egress rules are left


class Kind(enum.StrEnum):
    HEAL_STREAM = "heal_stream"
    ORPHAN_SESSION = "orphan_session"
    REMOVE_CONTAINER = "remove_container"
    COMPENSATE_SESSION = "compensate_session"  # its run is dead (ended in Prefect first): undo it
    EXPIRE_SESSION = "expire_session"
    CLOSE_LEASE = "close_lease"
    RESOLVE_PENDING_LEASE = "resolve_pending_lease"
    FINISH_RELEASE = "finish_release"
    SUBMIT_RUN = "submit_run"  # its run is dead before buying (ended in Prefect first): run it again
    END_STRAY_RUN = "end_stray_run"  # a flow run still alive for an ended session: cancel/crash it
    MARK_DEVICE_DOWN = "mark_device_down"  # first sight of a device down: remember when and as what
    CLEAR_DEVICE_DOWN = "clear_device_down"  # the device runs (and is not unhealthy) again
    RETIRE_DEVICE = "retire_device"
    REMOVE_NETWORK = "remove_network"  # a pair network whose device has no container left
    GUARD_NETWORK = "guard_network"  # a pair network missing egress rules: install them again
    REMOVE_GUARD = "remove_guard"  # egress rules of a pair network that is gone


class Reason(enum.StrEnum):
    STREAM_MISSING = "stream container missing"
    STREAM_STOPPED = "stream container not running"
    STREAM_UNHEALTHY = "stream container unhealthy"
    DEVICE_ENDED_UNDER_SESSION = "its device ended while the session was live"
    STREAM_UNROUTED = "no stream route recorded"  # booted before routes were recorded (0009)
    DEVICE_UNHELD = "claimed device whose session ended"
    IDLE = "idle"
    DEVICE_ENDED = "no live device owns it"
    DEVICE_UNKNOWN = "no device label"
    FLOW_RUN_GONE = "its provision flow run no longer runs"
    TTL_PASSED = "ttl passed"
    LEASE_ON_ENDED_SESSION = "number still open on an ended session"
    CANCEL_RETRY = "cancel refused earlier as too early; retrying"
    PURCHASE_UNKNOWN = "purchase outcome unknown; looking it up"
    PURCHASE_LEFT_PENDING = "purchase recorded as pending with no result"
    RELEASE_STALLED = "its release stopped half-way"
    RUN_NEVER_STARTED = "its provision flow run never started"
    RUN_DIED_EARLY = "its provision flow run died before buying anything"
    RUN_FOR_ENDED_SESSION = "flow run still alive for an ended session"
    DEVICE_RECOVERED = "device running again"
    NETWORK_UNUSED = "pair network of no live device, with no container left"
    NETWORK_UNGUARDED = "egress rules missing"
    GUARD_STRAY = "egress rules of a pair network that is gone"


@dataclass(frozen=True)
class Action:
    kind: Kind
    reason: str
    session_id: str | None = None
    container_id: str | None = None
    container_name: str | None = None
    lease_id: int | None = None
    run_id: str | None = None  # the flow run an action is about (submit, compensate: the dead one)
    device_id: str | None = None
    network_name: str | None = None
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        if self.container_name:
            return self.container_name
        if self.network_name:
            return self.network_name
        if self.lease_id is not None:
            return f"lease {self.lease_id}"
        if self.device_id and not self.session_id:
            return f"device {self.device_id}"
        return self.session_id or "-"


# Actions that end a session; its compensation (or release) closes its numbers itself.
ENDS_SESSION = frozenset(
    {Kind.COMPENSATE_SESSION, Kind.EXPIRE_SESSION, Kind.ORPHAN_SESSION, Kind.FINISH_RELEASE}
)


@dataclass(frozen=True)
class Policy:
    grace: timedelta  # before an unowned container or a pending purchase is trusted as leaked
    provisioning_deadline: timedelta  # a session with no run (or one Prefect does not know) waits this long
    stale_after: timedelta = timedelta(seconds=90)  # no heartbeat this long: the flow's process died
    device_grace: timedelta = timedelta(seconds=60)  # a device down this long (over two passes) is gone
    run_start_deadline: timedelta = timedelta(seconds=300)  # Scheduled longer: no worker took it
    run_pending_deadline: timedelta = timedelta(seconds=60)  # Pending longer: its worker died starting it
    max_submissions: int = 2  # provision runs per session: the first, and one re-submission
    max_submissions_unstarted: int = 4  # the same when the dead run never ran: its worker failed to start it
    unhealthy_grace: timedelta = timedelta(seconds=30)  # the same, for a device down as unhealthy


@dataclass(frozen=True)
class Verdict:
    """What one rule decided for one item: its actions, and whether the later rules still look at
    the item (``final``: they do not)."""

    actions: tuple[Action, ...] = ()
    final: bool = True


def done(*actions: Action) -> Verdict:
    """The rule decided this item: these actions (maybe none), and no later rule looks at it."""
    return Verdict(actions, final=True)


def noted(*actions: Action) -> Verdict:
    """These actions, and the later rules still look at the item."""
    return Verdict(actions, final=False)


@dataclass(frozen=True)
class Context:
    """One pass's observation and policy, with the indexes the rules share (computed once)."""

    observed: Observed
    policy: Policy
    by_device: Mapping[str, Mapping[str, ContainerView]]  # device id -> role -> container
    devices: Mapping[str, DeviceView]  # every non-terminal device by id
    session_ids: frozenset[str]  # every non-terminal session
    leased: frozenset[str]  # sessions with an open lease
    busy: frozenset[str]  # sessions a provision or a release is working on: they close their own numbers
    kept: frozenset[str]  # device ids with a live row or held by a session: their containers stay
    with_containers: frozenset[str]  # device ids with a container listed
    ending: frozenset[str] = frozenset()  # sessions an action of this pass ends (set before the lease rules)

    @classmethod
    def of(cls, observed: Observed, policy: Policy) -> Context:
        by_device: dict[str, dict[str, ContainerView]] = {}
        for container in observed.containers:
            by_device.setdefault(container.device_id, {})[container.role] = container
        devices = {d.id: d for d in observed.devices}
        return cls(
            observed=observed,
            policy=policy,
            by_device=by_device,
            devices=devices,
            session_ids=frozenset(s.id for s in observed.sessions),
            leased=frozenset(lease.session_id for lease in observed.leases),
            busy=frozenset(s.id for s in observed.sessions if s.state not in LIVE),
            kept=frozenset(devices) | {s.device_id for s in observed.sessions if s.device_id},
            with_containers=frozenset(c.device_id for c in observed.containers),
        )

    @property
    def now(self) -> datetime:
        return self.observed.now

    def containers_of(self, device_id: str | None) -> Mapping[str, ContainerView]:
        """The containers of one device by role (device, stream); empty when none is listed."""
        return self.by_device.get(device_id, {}) if device_id else {}

    def device_of(self, session: SessionView) -> DeviceView | None:
        """The live device row of the device a session holds."""
        return self.devices.get(session.device_id or "")
