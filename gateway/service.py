"""The gateway's collaborators and the one decision every route shares: can this stream be reached?"""

from __future__ import annotations

import logging

import httpx
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from gateway.activity import ActivityRecorder
from gateway.runs import FlowRuns, PrefectFlowRuns
from gateway.upstream import (
    STREAM_DOWN,
    StreamUnavailable,
    Upstream,
    UpstreamCache,
    find_stream,
    probe_stream,
    reason_for_state,
    route_from_url,
)
from provisioning.deps import Deps
from runtime import ContainerRuntime, RuntimeFailure
from settings import Settings
from store import State
from store import hosts as hostrepo
from store import repository as repo
from store.host_states import HostState

log = logging.getLogger(__name__)


class UnknownSession(LookupError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id!r}")
        self.session_id = session_id


class Gateway:
    """Long-lived state of one gateway process: store, Docker, Prefect, one HTTP client."""

    def __init__(
        self, deps: Deps, *, runtime: ContainerRuntime | None = None, runs: FlowRuns | None = None
    ) -> None:
        self.deps = deps
        self._runtime = runtime
        self.runs: FlowRuns = runs or PrefectFlowRuns()
        self.cache = UpstreamCache()
        self.activity = ActivityRecorder(deps)
        self.http: httpx.AsyncClient | None = None

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    @property
    def runtime(self) -> ContainerRuntime:
        if self._runtime is None:
            self._runtime = self.deps.runtime
        return self._runtime

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

    def _recorded_route(self, device_id: str) -> Upstream | None:
        """Several hosts: the device's stream route as recorded in the database (its host's
        stream address and published port), no Docker call; None for a single-engine device."""
        with self.deps.sessions() as db:
            found = hostrepo.device_route(db, device_id)
        if found is None:
            return None
        host, stream_url = found
        if host.state == HostState.DOWN.value:
            raise StreamUnavailable(STREAM_DOWN, detail=f"its host {host.name} is down")
        return route_from_url(device_id, stream_url)

    async def upstream(self, session_id: str, *, probe: bool = False) -> Upstream:
        """The live session's stream container, or StreamUnavailable saying why not. While the
        database does not answer, the last known route of a session that was live is used for
        ``gateway.route_keep_s`` (its stream still runs; only the store is away)."""
        try:
            state, device_id = await self.session_device(session_id)
        except SQLAlchemyError:
            last = self.cache.last_known(session_id, self.settings.gateway.route_keep_s)
            if last is None:
                raise
            log.warning(
                "session %s: database unavailable; using the last known route %s", session_id, last.base
            )
            return last
        reason = reason_for_state(state)
        if reason is not None:
            self.cache.forget(session_id)
            raise StreamUnavailable(reason)
        upstream = None if probe else self.cache.get(session_id)
        if upstream is None and device_id is not None:
            upstream = await run_in_threadpool(self._recorded_route, device_id)
        if upstream is None:
            try:
                runtime = await run_in_threadpool(lambda: self.runtime)
            except RuntimeFailure as exc:
                raise StreamUnavailable(STREAM_DOWN, detail=f"Docker: {exc}") from exc
            upstream = await run_in_threadpool(find_stream, runtime, device_id)
        if probe:
            assert self.http is not None, "Gateway.start() was not called"
            try:
                await probe_stream(self.http, upstream)
            except StreamUnavailable:
                self.cache.forget(session_id)
                raise
        self.cache.put(session_id, upstream)
        return upstream
