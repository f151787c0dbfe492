"""The gateway's request lifecycle, input limits and degraded answers, against the real test
database, a real unreachable PostgreSQL address and real stream containers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import sessionmaker

from provisioner.prefect_api.orchestrator import PrefectFlowRuns
from provisioner.store import State, make_engine
from provisioner.store import repository as repo

pytestmark = pytest.mark.docker

# Nothing listens on port 1 of loopback: connecting fails at once, as when PostgreSQL or the Prefect
# server is stopped. Real clients, real connection failures.
DEAD_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/none"
DEAD_PREFECT = "http://127.0.0.1:1/api"


def row(gw, session_id):
    with gw.deps.sessions() as db:
        return repo.get_session(db, session_id)


JSON = {"Content-Type": "application/json"}


class TestDurableAccept:
    def test_post_writes_the_session_before_the_run_and_records_the_run(self, gw) -> None:
        reply = gw.client.post(
            "/sessions", json={"service": "telegram", "ttl_s": 60}, headers={"Idempotency-Key": "a"}
        )
        assert reply.status_code == 202
        sid, run_id = reply.json()["session_id"], reply.json()["flow_run_id"]
        session = row(gw, sid)
        assert session.state == "requested" and session.request == {"service": "telegram", "ttl_s": 60.0}
        assert session.idempotency_key == "gateway:provision:operator:a" and session.requested_by.startswith(
            "gateway:"
        )
        assert session.flow_run_id == run_id and session.submissions == 1
        assert gw.runs.started[0][1] == {"request": {"service": "telegram", "ttl_s": 60.0}, "session_id": sid}
        assert gw.client.get(f"/sessions/{sid}").json()["state"] == "requested"

    def test_prefect_down_is_503_and_a_keyless_session_is_failed_not_left_behind(
        self, gateway_factory
    ) -> None:
        gw = gateway_factory()
        swap_runs(gw, PrefectFlowRuns(api_url=DEAD_PREFECT))
        reply = gw.client.post("/sessions", json={})
        assert reply.status_code == 503 and reply.headers["Retry-After"] == "5"
        assert reply.json()["reason"] == "orchestrator unavailable"
        with gw.deps.sessions() as db:
            rows = repo.list_sessions(db)
        assert [(r.state, r.flow_run_id) for r in rows] == [("failed", None)]
        assert "no flow run could be created" in rows[0].last_error

    def test_prefect_down_with_a_key_keeps_the_session_for_the_retry(self, gateway_factory) -> None:
        gw = gateway_factory()
        recording = swap_runs(gw, PrefectFlowRuns(api_url=DEAD_PREFECT))
        first = gw.client.post("/sessions", json={}, headers={"Idempotency-Key": "k"})
        assert first.status_code == 503
        with gw.deps.sessions() as db:
            (pending,) = repo.list_sessions(db)
        assert pending.state == "requested" and pending.flow_run_id is None
        swap_runs(gw, recording)
        retry = gw.client.post("/sessions", json={}, headers={"Idempotency-Key": "k"})
        assert retry.status_code == 202 and retry.json()["session_id"] == pending.id
        assert row(gw, pending.id).flow_run_id == retry.json()["flow_run_id"]

    def test_prefect_that_never_answers_is_503_within_the_timeout(self, gateway_factory, silent) -> None:
        """Prefect accepts the connection and never replies (overloaded, hung): the POST answers
        503 within the gateway's timeout instead of holding the client for Prefect's minutes of
        retries; the session with a key stays for the retry, the one without is failed."""
        gw = gateway_factory()
        swap_runs(gw, PrefectFlowRuns(api_url=silent, timeout_s=1.0))
        started = time.monotonic()
        keyless = gw.client.post("/sessions", json={})
        keyed = gw.client.post("/sessions", json={}, headers={"Idempotency-Key": "slow"})
        elapsed = time.monotonic() - started
        for reply in (keyless, keyed):
            assert reply.status_code == 503 and reply.headers["Retry-After"] == "5", reply.text
            assert reply.json()["reason"] == "orchestrator unavailable"
            assert "did not answer within 1 s" in reply.json()["detail"]
        assert elapsed < 10  # two calls of 1 s each, not Prefect's retries
        with gw.deps.sessions() as db:
            states = sorted((r.state, r.idempotency_key is not None) for r in repo.list_sessions(db))
        assert states == [("failed", False), ("requested", True)]


@pytest.fixture
def silent() -> Iterator[str]:
    """A Prefect API URL whose server accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"


def swap_runs(gw, runs):
    """Swap the gateway's Prefect client; returns the previous one."""
    previous = gw.gateway.runs
    gw.gateway.runs = runs
    return previous


class TestDelete:
    def test_delete_before_the_run_started_cancels_it_and_ends_the_session(self, gw) -> None:
        created = gw.client.post("/sessions", json={}).json()
        reply = gw.client.delete(f"/sessions/{created['session_id']}")
        assert reply.status_code == 200 and reply.json()["state"] == "cancelled"
        assert gw.runs.cancelled == [created["flow_run_id"]]
        assert [d for d, _, _ in gw.runs.started] == ["provision/executor"]
        assert row(gw, created["session_id"]).state == "cancelled"

    def test_delete_after_the_run_started_starts_a_release_run(self, gw) -> None:
        created = gw.client.post("/sessions", json={}).json()
        gw.runs.running.add(created["flow_run_id"])
        reply = gw.client.delete(f"/sessions/{created['session_id']}")
        assert reply.status_code == 202 and reply.json()["state"] == "releasing"
        assert [d for d, _, _ in gw.runs.started] == ["provision/executor", "release/release"]

    @pytest.mark.parametrize("state", [State.RELEASED, State.FAILED])
    def test_delete_of_an_ended_session_answers_its_state_and_starts_nothing(
        self, gw, make_session, state
    ) -> None:
        sid = make_session(state)
        for _ in range(2):
            reply = gw.client.delete(f"/sessions/{sid}")
            assert reply.status_code == 200 and reply.json()["state"] == state.value
        assert gw.runs.started == []

    def test_second_delete_of_a_live_session_reuses_the_release_run(self, gw, make_session) -> None:
        sid = make_session(State.VERIFIED)
        first = gw.client.delete(f"/sessions/{sid}").json()
        second = gw.client.delete(f"/sessions/{sid}").json()
        assert first["flow_run_id"] == second["flow_run_id"] and len(gw.runs.started) == 1
        assert second["state"] == "releasing"

    def test_a_deleted_session_reads_releasing_before_its_release_run_starts(self, gw, make_session) -> None:
        sid = make_session(State.VERIFIED)
        reply = gw.client.delete(f"/sessions/{sid}")
        assert reply.status_code == 202 and reply.json()["state"] == "releasing"
        # The release run is only recorded (nothing runs it): the state is the gateway's own write.
        assert gw.client.get(f"/sessions/{sid}").json()["state"] == "releasing"
        assert row(gw, sid).state == "releasing"

    def test_a_session_still_provisioning_is_left_to_its_release_run(self, gw, make_session) -> None:
        sid = make_session(State.LAUNCHING)
        reply = gw.client.delete(f"/sessions/{sid}")
        assert reply.status_code == 202 and [d for d, _, _ in gw.runs.started] == ["release/release"]
        assert row(gw, sid).state == "launching"  # its release run cancels the provision


class TestInputLimits:
    def test_body_over_64_kib_is_413_and_nothing_is_written(self, gw) -> None:
        big = b'{"service": "' + b"x" * (64 * 1024) + b'"}'
        assert gw.client.post("/sessions", content=big, headers=JSON).status_code == 413

        def chunks():
            yield big

        assert gw.client.post("/sessions", content=chunks(), headers=JSON).status_code == 413
        assert gw.runs.started == []
        with gw.deps.sessions() as db:
            assert repo.list_sessions(db) == []

    @pytest.mark.parametrize("raw", [b'{"ttl_s": NaN}', b'{"ttl_s": Infinity}', b'{"ttl_s": -Infinity}'])
    def test_nan_and_infinity_are_422(self, gw, raw) -> None:
        reply = gw.client.post("/sessions", content=raw, headers=JSON)
        assert reply.status_code == 422 and reply.json()["reason"] == "invalid JSON"

    def test_invalid_utf8_is_400(self, gw) -> None:
        reply = gw.client.post("/sessions", content=b'{"service": "\xff\xfe"}', headers=JSON)
        assert reply.status_code == 400 and reply.json()["detail"] == "the body is not valid UTF-8"

    def test_deep_nesting_is_422(self, gw) -> None:
        reply = gw.client.post("/sessions", content=b"[" * 5000 + b"]" * 5000, headers=JSON)
        assert reply.status_code == 422 and "nested deeper" in reply.json()["detail"]

    def test_422_names_the_fields_and_never_echoes_the_input(self, gw) -> None:
        secret = "S3CRET-" + "y" * 300
        reply = gw.client.post("/sessions", json={"service": secret, "ttl_s": -1, "bogus": secret})
        assert reply.status_code == 422
        assert {tuple(e["loc"]) for e in reply.json()["errors"]} == {("service",), ("ttl_s",), ("bogus",)}
        assert "S3CRET" not in reply.text


class TestDegraded:
    def test_database_down_is_503_json_and_html_with_retry_after(self, gw) -> None:
        gw.deps.sessions = sessionmaker(make_engine(DEAD_DATABASE))
        for method, path in (("GET", "/sessions"), ("GET", "/sessions/abcdefghijkm"), ("POST", "/sessions")):
            reply = gw.client.request(method, path, json={} if method == "POST" else None)
            assert reply.status_code == 503 and reply.headers["Retry-After"] == "5"
            assert reply.json()["reason"] == "database unavailable"
        page = gw.client.get("/vnc/abcdefghijkm/vnc.html", headers={"Accept": "text/html"})
        assert page.status_code == 503 and "session store is not answering" in page.text
        assert gw.runs.started == []

    def test_stream_keeps_its_last_known_route_while_the_database_is_down(
        self, gw, make_session, launched
    ) -> None:
        sid = launched.session_id
        make_session(State.VERIFIED, session_id=sid)
        assert gw.client.get(f"/vnc/{sid}/vnc.html").status_code == 200
        gw.deps.sessions = sessionmaker(make_engine(DEAD_DATABASE))
        assert gw.client.get(f"/vnc/{sid}/vnc.html").status_code == 200
        other = gw.client.get("/vnc/abcdefghijkm/vnc.html")
        assert other.status_code == 503 and other.json()["reason"] == "database unavailable"

    def test_readyz_names_each_dependency_and_healthz_stays_up(self, gw) -> None:
        gw.deps.sessions = sessionmaker(make_engine(DEAD_DATABASE))
        reply = gw.client.get("/readyz")
        assert reply.status_code == 503 and reply.headers["Retry-After"] == "5"
        checks = reply.json()["checks"]
        assert checks["database"] == "database unavailable"
        assert set(checks) == {"database", "prefect"}, "the gateway has no Docker engine to check"
        swap_runs(gw, PrefectFlowRuns(api_url=DEAD_PREFECT))
        assert gw.client.get("/readyz").json()["checks"]["prefect"] == "orchestrator unavailable"
        assert gw.client.get("/healthz").status_code == 200
