"""The gateway's collaborators and the one decision every route shares: can this stream be reached?"""

from __future__ import annotations

import logging

import httpx
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from provisioner.gateway.activity import ActivityRecorder
from provisioner.gateway.auth import LastKnown
from provisioner.gateway.upstream import (
    STREAM_DOWN,
    StreamUnavailable,
    Upstream,
    UpstreamCache,
    probe_stream,
    reason_for_state,
    recorded_upstream,
)
from provisioner.prefect_api.orchestrator import FlowRuns, PrefectFlowRuns
from provisioner.settings import Settings
from provisioner.steps.deps import Deps
from provisioner.store import State
from provisioner.store import devices as devrepo
from provisioner.store import repository as repo

log = logging.getLogger(__name__)


class UnknownSession(LookupError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id!r}")
        self.session_id = session_id


class Gateway:
    """Long-lived state of one gateway process: store, Prefect, one HTTP client (no Docker)."""

    def __init__(self, deps: Deps, *, runs: FlowRuns | None = None) -> None:
        self.deps = deps
        self.runs: FlowRuns = runs or PrefectFlowRuns(timeout_s=deps.settings.gateway.prefect_timeout_s)
        self.cache = UpstreamCache()
        self.activity = ActivityRecorder(deps)
        self.owners = LastKnown(deps.settings.gateway.route_keep_s)  # session id -> owner
        self.http: httpx.AsyncClient | None = None

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    async def start(self) -> None:
        # Never through an environment proxy: upstreams are container addresses.
        self.http = httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0, connect=2.0))

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
            self.http = None

    async def session_state(self, session_id: str) -> State:
        def read() -> str | None:
            with self.deps.sessions() as db:
                row = repo.find_session(db, session_id)
                return None if row is None else row.state

        state = await run_in_threadpool(read)
        if state is None:
            raise UnknownSession(session_id)
        return State(state)

    async def session_device(self, session_id: str) -> tuple[State, str | None]:
        """The session's state and the id of the device it holds, in one read."""

        def read() -> tuple[str, str | None] | None:
            with self.deps.sessions() as db:
                row = repo.find_session(db, session_id)
                return None if row is None else (row.state, row.device_id)

        found = await run_in_threadpool(read)
        if found is None:
            raise UnknownSession(session_id)
        return State(found[0]), found[1]

    def _recorded_route(self, device_id: str) -> Upstream:
        """The device's stream route as recorded in the database (and its host's state)."""
        with self.deps.sessions() as db:
            return recorded_upstream(devrepo.stream_route(db, device_id))

    async def upstream(self, session_id: str, *, probe: bool = False) -> Upstream:
        """The live session's stream, or StreamUnavailable saying why not. The route comes from
        the database and is probed before it is used (then cached for a couple of seconds;
        ``probe`` skips the cache). While the database does not answer, the last known route of
        a session that was live is used for ``gateway.route_keep_s`` (its stream still runs; only
        the store is away)."""
        try:
            state, device_id = await self.session_device(session_id)
        except SQLAlchemyError:
            last = self.cache.last_known(session_id, self.settings.gateway.route_keep_s)
            if last is None:
                raise
            log.warning(
                "session %s: database unavailable; using the last known route %s", session_id, last.base
            )
            if probe:
                await self._probe(session_id, last)
            return last
        reason = reason_for_state(state)
        if reason is not None:
            self.cache.forget(session_id)
            raise StreamUnavailable(reason)
        upstream = None if probe else self.cache.get(session_id)
        if upstream is not None:
            return upstream
        if device_id is None:
            raise StreamUnavailable(STREAM_DOWN, detail="the session holds no device")
        upstream = await run_in_threadpool(self._recorded_route, device_id)
        await self._probe(session_id, upstream)
        self.cache.put(session_id, upstream)
        return upstream

    async def _probe(self, session_id: str, upstream: Upstream) -> None:
        assert self.http is not None, "Gateway.start() was not called"
        try:
            await probe_stream(self.http, upstream)
        except StreamUnavailable:
            self.cache.forget(session_id)
            raise
