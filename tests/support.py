"""Small helpers shared by the tests: bounded waits, reading rows, renting a number."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from provisioner.store import repository as repo

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.1,
    describe: Callable[[], object] | None = None,
) -> T:
    """Poll until ``predicate`` returns something truthy, and return it. On timeout the error
    carries ``describe()``: what the test saw last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    seen = f": {describe()}" if describe else ""
    raise AssertionError(f"condition not met within {timeout:g} s{seen}")


def session(deps, session_id: str):
    with deps.sessions() as db:
        return repo.get_session(db, session_id)


class Rented(NamedTuple):
    session_id: str
    lease_id: int
    activation_id: str


def rent(deps, provider: str = "sms_activate") -> Rented:
    """A new session with one number bought from ``provider`` for telegram in RU (no flow around
    it), waiting for its code."""
    from provisioner.steps.numbers import rent_number
    from provisioner.steps.request import RentRequest

    with deps.sessions.begin() as db:
        sid = repo.create_session(db, service="telegram", country="RU", actor="test").id
    rented = rent_number(deps, sid, RentRequest("telegram", "RU", (provider,)), attempt=1, actor="test")
    return Rented(sid, rented.lease_id, rented.activation_id)


def device_containers(deps, runtime, session_id: str):
    """The containers of the device the session holds (labels name the device, the DB the holder)."""
    with deps.sessions() as db:
        device_id = repo.get_session(db, session_id).device_id
    return [c for c in runtime.list_managed() if device_id and c.device_id == device_id]


def device_of(deps, session_id: str):
    """The devices row of the device a session holds (None when it holds none)."""
    from provisioner.store import devices as devrepo

    with deps.sessions() as db:
        return devrepo.session_device(db, session_id)


class BackgroundProvision:
    """A provision flow run in a thread, so a test can act while it runs; ``join()`` gives its
    final Prefect state."""

    def __init__(self, request) -> None:
        from flows.provision import provision_session

        self.state = None

        def run() -> None:
            self.state = provision_session(request=request, return_state=True)

        self.thread = threading.Thread(target=run, name="background-provision")
        self.thread.start()

    def join(self, timeout: float = 60.0):
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), "the provision did not end"
        return self.state


def newest_session_in(deps, state, timeout: float = 60.0):
    """Wait until the newest session is in ``state`` and return it."""

    def probe():
        with deps.sessions() as db:
            rows = repo.list_sessions(db, limit=1, states=[state])
            return rows[0] if rows else None

    return wait_for(probe, timeout=timeout)


PHONE = "+79001234567"
CODE = "482913"


def rent_and_receive(db_sessions, session_id: str, *, code: str | None = CODE, phone: str = PHONE) -> int:
    """A number bought for the session (as a purchase records it) and, when given, its code (as
    the watcher records it); returns the lease id."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from provisioner.store import codes as coderepo
    from provisioner.store import leases as lease_repo

    with db_sessions.begin() as db:
        lease = lease_repo.record_lease_pending(
            db, session_id, provider="sms_man", service="tg", country="0", attempt=1
        )
        bought = lease_repo.BoughtNumber("act-1", phone, Decimal("0.10"), "USD", datetime.now(UTC))
        lease_repo.complete_lease(db, lease.id, bought)
        if code is not None:
            assert coderepo.record_code(db, lease.id, code, via="test", actor="test")
        return lease.id
