"""The PostgreSQL session store: models, the state machine, and repository functions."""

from provisioner.store.db import get_engine, get_sessionmaker, make_engine, reset_engine
from provisioner.store.device_states import (
    DEVICE_ALLOWED,
    DEVICE_TERMINAL,
    DeviceState,
    IllegalDeviceTransition,
)
from provisioner.store.models import (
    OPEN_LEASE_OUTCOMES,
    SESSION_ID_PATTERN,
    Base,
    DeviceRow,
    EventRow,
    LeaseOutcome,
    LeaseRow,
    SessionRow,
    new_session_id,
)
from provisioner.store.states import ALLOWED, LIVE, PROVISIONING, TERMINAL, IllegalTransition, State

__all__ = [
    "ALLOWED",
    "DEVICE_ALLOWED",
    "DEVICE_TERMINAL",
    "DeviceRow",
    "DeviceState",
    "IllegalDeviceTransition",
    "LIVE",
    "OPEN_LEASE_OUTCOMES",
    "PROVISIONING",
    "SESSION_ID_PATTERN",
    "TERMINAL",
    "Base",
    "EventRow",
    "IllegalTransition",
    "LeaseOutcome",
    "LeaseRow",
    "SessionRow",
    "State",
    "get_engine",
    "get_sessionmaker",
    "make_engine",
    "new_session_id",
    "reset_engine",
]
