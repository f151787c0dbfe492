"""The gateway against real sessions: PostgreSQL rows, stream containers on the engine, uvicorn."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from provisioner.gateway.upstream import Upstream
from provisioner.runtime import Role
from provisioner.runtime.containers import STREAM_PORT
from provisioner.store import LeaseOutcome, State, new_session_id
from provisioner.store import devices as devrepo
from provisioner.store import leases as lease_repo
from tests.harness.gateway import TOKEN, launch, record_stream_route
from tests.support import wait_for

pytestmark = pytest.mark.docker


def read_banner(ws) -> bytes:
    data = b""
    while len(data) < 12:
        message = ws.recv(timeout=5)
        data += message if isinstance(message, bytes) else message.encode()
    return data


class TestSessionsApi:
    def test_unknown_session_is_404(self, gw) -> None:
        sid = new_session_id()
        for path in (f"/sessions/{sid}", f"/sessions/{sid}/stream"):
            reply = gw.client.get(path)
            assert reply.status_code == 404 and reply.json()["reason"] == "unknown session"
        assert gw.client.delete(f"/sessions/{sid}").status_code == 404
        assert gw.runs.started == []

    def test_detail_gives_the_owner_the_number_and_lists_events(self, gw, make_session) -> None:
        sid = make_session(State.AWAITING_CODE, verification_code="123456")
        body = gw.client.get(f"/sessions/{sid}").json()
        assert body["id"] == sid and body["state"] == "awaiting_code" and body["provider"] == "sms_man"
        assert body["phone"] == "+79001234567" and body["owner"] == "prefect"
        assert body["code"] == "123456" and body["code_received"] is True
        assert (
            body["stream_url"]
            == f"http://gateway.test/vnc/{sid}/vnc.html?autoconnect=1&reconnect=1&reconnect_delay=2000&path=vnc/{sid}/websockify"
        )
        assert [e["to"] for e in body["events"]] == [
            "requested",
            "number_acquired",
            "launching",
            "awaiting_code",
        ]
        assert body["created_at"] and body["events"][0]["actor"] == "test"

    def test_list_filters_by_state(self, gw, make_session) -> None:
        live, done = make_session(State.VERIFIED), make_session(State.RELEASED)
        ids = {s["id"] for s in gw.client.get("/sessions").json()["sessions"]}
        assert {live, done} <= ids
        only = gw.client.get("/sessions", params={"state": "released"}).json()["sessions"]
        assert [s["id"] for s in only] == [done] and only[0]["stream_url"] is None
        assert gw.client.get("/sessions", params={"state": "nonsense"}).status_code == 400

    @pytest.mark.parametrize(
        ("state", "reason"),
        [
            (State.REQUESTED, "provisioning"),
            (State.LAUNCHING, "provisioning"),
            (State.RELEASED, "released"),
            (State.FAILED, "failed"),
            (State.ORPHANED, "orphaned"),
        ],
    )
    def test_stream_of_a_session_that_is_not_live_is_503(self, gw, make_session, state, reason) -> None:
        sid = make_session(state)
        reply = gw.client.get(f"/sessions/{sid}/stream")
        assert reply.status_code == 503 and reply.json()["reason"] == reason

    def test_bad_ids_and_paths_are_rejected(self, gw, launched, make_session) -> None:
        make_session(State.AWAITING_CODE, session_id=launched.session_id)
        for path in (
            "/sessions/BAD",
            "/sessions/abc/stream",
            "/vnc/..%2f..%2fetc/passwd",
            "/vnc/Abcdefghijkl/x",
        ):
            assert gw.client.get(path).status_code == 404, path
        climbing = gw.client.get(f"/vnc/{launched.session_id}/app/%2e%2e/%2e%2e/etc/passwd")
        assert climbing.status_code == 400
        assert gw.client.get(f"/vnc/{launched.session_id}/a%5cb").status_code == 400


class TestCreateAndRelease:
    def test_bad_body_is_422_with_pydantic_errors(self, gw) -> None:
        reply = gw.client.post("/sessions", json={"service": "tg!", "number_attempts": 99, "bogus": 1})
        assert reply.status_code == 422
        fields = {tuple(e["loc"]) for e in reply.json()["errors"]}
        assert fields == {("service",), ("number_attempts",), ("bogus",)}
        assert (
            gw.client.post(
                "/sessions", content=b"{not json", headers={"Content-Type": "application/json"}
            ).status_code
            == 422
        )
        assert gw.runs.started == []

    def test_unknown_service_country_or_a_bare_price_is_422_with_close_matches(self, gw) -> None:
        body = {"service": "telgram", "country": "Kazakstan", "max_price": "0.5"}
        reply = gw.client.post("/sessions", json=body)
        assert reply.status_code == 422
        errors = {e["loc"][0]: e["msg"] for e in reply.json()["errors"]}
        assert "unknown service; did you mean telegram" in errors["service"]  # input cut out
        assert "telgram" not in errors["service"] and "Kazakstan" not in errors["country"]
        assert "unknown country; did you mean KZ (Kazakhstan)" in errors["country"]
        unknown = gw.client.post("/sessions", json={"country": "XX"}).json()["errors"][0]["msg"]
        assert "unknown country (an ISO 3166 alpha-2 code" in unknown, unknown
        assert "needs an amount and a currency" in errors["max_price"]
        assert gw.runs.started == []

    @pytest.mark.parametrize(
        ("body", "field", "words"),
        [
            ({"device_profile": "pixel9"}, "device_profile", "unknown device profile 'pixel9'"),
            (
                {"providers": ["sms_activate", "twilio"]},
                "providers",
                "unknown provider; one of sms_man, onlinesim, sms_activate",  # the input cut out
            ),
        ],
        ids=["profile", "provider"],
    )
    def test_unknown_profile_or_provider_is_422_before_any_run(self, gw, body, field, words) -> None:
        reply = gw.client.post("/sessions", json=body)
        assert reply.status_code == 422
        [error] = reply.json()["errors"]
        assert error["loc"][0] == field and words in error["msg"]
        assert gw.runs.started == []

    def test_session_detail_lists_its_numbers_and_which_need_a_person(self, gw, make_session) -> None:
        sid = make_session(State.FAILED)
        with gw.deps.sessions.begin() as db:
            lease = lease_repo.record_lease_pending(
                db, sid, provider="sms_man", service="tg", country="0", attempt=1
            )
            lease_repo.set_lease_outcome(db, lease.id, LeaseOutcome.UNKNOWN, attention="sms_man cannot list")
        [number] = gw.client.get(f"/sessions/{sid}").json()["numbers"]
        assert number["outcome"] == "unknown" and number["needs_attention"] is True
        assert number["attention"] == "sms_man cannot list" and number["provider"] == "sms_man"

    def test_post_starts_a_provision_run_and_a_replay_returns_it(self, gw) -> None:
        body = {"service": "telegram", "providers": ["sms_man"], "max_price": "1.5 USD"}
        first = gw.client.post("/sessions", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 202
        sid = first.json()["session_id"]
        assert gw.runs.started == [
            (
                "provision/executor",
                {
                    "request": {"service": "telegram", "providers": ["sms_man"], "max_price": "1.5 USD"},
                    "session_id": sid,
                },
                "gateway:provision:operator:k-1",
            )
        ]
        again = gw.client.post("/sessions", json=body, headers={"Idempotency-Key": "k-1"})
        assert again.json() == first.json()
        other = gw.client.post("/sessions", json={})
        assert other.status_code == 202 and other.json()["session_id"] != sid
        assert len(gw.runs.started) == 2

    def test_delete_starts_a_release_run(self, gw, make_session) -> None:
        sid = make_session(State.VERIFIED)
        reply = gw.client.delete(f"/sessions/{sid}")
        assert reply.status_code == 202 and reply.json()["session_id"] == sid
        assert reply.json()["state"] == "releasing"
        assert gw.runs.started == [("release/release", {"session_id": sid}, f"release:{sid}")]


class TestStreamAvailability:
    def test_live_stream_is_200_then_503_when_its_container_goes(
        self, gw, make_session, runtime, db_sessions
    ) -> None:
        sid = new_session_id()
        launch(runtime, sid)
        try:
            make_session(State.AWAITING_CODE, session_id=sid)
            reply = gw.client.get(f"/sessions/{sid}/stream")
            assert reply.status_code == 200, reply.text
            assert reply.json()["stream_url"].startswith(f"http://gateway.test/vnc/{sid}/vnc.html")
            assert gw.client.get(f"/vnc/{sid}/vnc.html").status_code == 200

            runtime.remove(runtime.name_for(sid, Role.STREAM))
            reply = gw.client.get(f"/sessions/{sid}/stream")
            assert reply.status_code == 503 and reply.json()["reason"] == "stream down"
            # It does not answer, or (its address already given to another test's stream) answers
            # 404 for this device: either way the reply names this session's stream.
            assert reply.json()["detail"].startswith(f"{runtime.name_for(sid, Role.STREAM)} ")
            page = gw.client.get(f"/vnc/{sid}/vnc.html", headers={"Accept": "text/html"})
            assert page.status_code == 503 and "text/html" in page.headers["content-type"]
            assert "not answering" in page.text and page.headers["retry-after"] == "5"
            assert gw.client.get(f"/vnc/{sid}/app/ui.js").json()["reason"] == "stream down"
            with pytest.raises(InvalidStatus) as refused:
                ws_connect(f"{gw.ws_url}/vnc/{sid}/websockify", subprotocols=["binary"], open_timeout=5)
            assert refused.value.response.status_code == 503

            runtime.heal_stream(sid)
            runtime.wait_stream_ready(sid, timeout_s=30)
            record_stream_route(db_sessions, runtime, sid)  # as reconciliation's heal does
            # The test runtime checked readiness through the published port; the gateway probes the
            # recorded route, the stream's network address (once seen refused right after that
            # check, under load): wait, bounded, for the gateway's own 200.
            wait_for(lambda: gw.client.get(f"/sessions/{sid}/stream").status_code == 200, timeout=15)
        finally:
            runtime.remove_device(sid)
        assert gw.client.get(f"/sessions/{sid}/stream").json()["reason"] == "stream down"

    def test_websocket_is_not_routed_by_a_cached_address_another_stream_holds_now(
        self, gw, make_session, launched, runtime, db_sessions
    ) -> None:
        """Docker gives a removed stream's address to the next container at once, so a route cached
        while this session's stream answered there may now lead to another session's stream: the
        WebSocket (the device's screen and input) is never routed from the cache."""
        sid = make_session(State.VERIFIED)  # live; its stream is gone, its address taken by another's
        other = runtime.client.api.inspect_container(runtime.name_for(launched.session_id, Role.STREAM))
        address = other["NetworkSettings"]["Networks"][runtime.network]["IPAddress"]
        with db_sessions.begin() as db:
            devrepo.set_stream(db, sid, route=f"{address}:{STREAM_PORT}", url=None)
        gw.gateway.cache.put(sid, Upstream(runtime.name_for(sid, Role.STREAM), address, STREAM_PORT, sid))
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(f"{gw.ws_url}/vnc/{sid}/websockify", subprotocols=["binary"], open_timeout=5)
        assert refused.value.response.status_code == 503
        assert b"answered HTTP 404" in refused.value.response.body  # the other stream is not this device's

    def test_stopped_stream_container_is_stream_down(self, gw, make_session, runtime, docker_client) -> None:
        sid = new_session_id()
        runtime.launch_stream(sid)  # no device needed: only the container's state matters here
        try:
            make_session(State.VERIFIED, session_id=sid)
            docker_client.api.stop(runtime.name_for(sid, Role.STREAM), timeout=1)
            reply = gw.client.get(f"/sessions/{sid}/stream")
            assert reply.status_code == 503
            assert (reply.json()["reason"], reply.json()["session_id"]) == ("stream down", sid)
            # A stopped container gives up its address: not answering, or 404 from a stream that
            # took the address (another test process's); either way the reply names this stream.
            assert reply.json()["detail"].startswith(f"{runtime.name_for(sid, Role.STREAM)} ")
        finally:
            runtime.remove_device(sid)

    def test_released_session_page_is_410_saying_it_ended(self, gw, make_session, launched) -> None:
        make_session(State.RELEASED, session_id=launched.session_id)
        page = gw.client.get(f"/vnc/{launched.session_id}/vnc.html", headers={"Accept": "text/html"})
        assert page.status_code == 410 and "has ended" in page.text and "released" in page.text


class TestVersionAndHeaders:
    def test_version_route_and_header_on_every_reply(self, gateway_factory, make_session, launched) -> None:
        from provisioner.settings.version import VERSION

        gw = gateway_factory(token=TOKEN)
        reply = gw.client.get("/version")
        assert reply.status_code == 401, "only /healthz is open"
        authed = {"Authorization": f"Bearer {TOKEN}"}
        reply = gw.client.get("/version", headers=authed)
        assert reply.json() == {"version": VERSION}
        assert reply.headers["x-provisioner-version"] == VERSION
        assert gw.client.get("/healthz").headers["x-provisioner-version"] == VERSION

        sid = launched.session_id
        make_session(State.AWAITING_CODE, session_id=sid)
        page = gw.client.get(f"/vnc/{sid}/vnc.html", headers=authed)
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-provisioner-version"] == VERSION
        script = gw.client.get(f"/vnc/{sid}/app/ui.js", headers=authed)
        assert script.status_code == 200
        assert script.headers.get("cache-control") != "no-store", "static assets keep their caching"
        released = make_session(State.RELEASED)
        gone = gw.client.get(f"/vnc/{released}/vnc.html", headers={**authed, "Accept": "text/html"})
        assert gone.status_code == 410  # ended: the page says so, and is never cached
        assert gone.headers["cache-control"] == "no-store"


class TestProxy:
    def test_serves_novnc_and_relays_the_rfb_banner(self, gw, make_session, launched) -> None:
        sid = launched.session_id
        make_session(State.AWAITING_CODE, session_id=sid)
        page = gw.client.get(f"/vnc/{sid}/vnc.html")
        assert page.status_code == 200 and "noVNC" in page.text
        assert page.headers["content-type"].startswith("text/html")
        assert gw.client.get(f"/vnc/{sid}/app/ui.js").status_code == 200
        assert gw.client.get(f"/vnc/{sid}/no-such-file").status_code == 404
        root = gw.client.get(f"/vnc/{sid}", follow_redirects=False)
        assert root.status_code == 307 and root.headers["location"].endswith(f"path=vnc/{sid}/websockify")
        with ws_connect(f"{gw.ws_url}/vnc/{sid}/websockify", subprotocols=["binary"], open_timeout=5) as ws:
            assert ws.subprotocol == "binary"
            assert read_banner(ws).startswith(b"RFB 003.00")
            ws.send(b"RFB 003.008\n")  # the client's version: the server answers with security types
            assert len(ws.recv(timeout=5)) >= 2

    def test_websocket_to_an_unknown_or_other_instance_session_is_refused(
        self, gw, make_session, launched, runtime_factory
    ) -> None:
        with pytest.raises(InvalidStatus) as unknown:
            ws_connect(f"{gw.ws_url}/vnc/{new_session_id()}/websockify", open_timeout=5)
        assert unknown.value.response.status_code == 404
        # A live session row, but its containers belong to another deployment instance.
        other = runtime_factory()
        sid = new_session_id()
        other.launch_stream(sid)
        try:
            make_session(State.AWAITING_CODE, session_id=sid)
            # Routes are recorded by this deployment's boots only: the other one's stream has none.
            reply = gw.client.get(f"/vnc/{sid}/vnc.html")
            assert reply.status_code == 503
            assert reply.json()["detail"] == f"device {sid} has no stream route recorded"
            with pytest.raises(InvalidStatus) as other_instance:
                ws_connect(f"{gw.ws_url}/vnc/{sid}/websockify", open_timeout=5)
            refused = other_instance.value.response
            assert refused.status_code == 503
            assert json.loads(refused.body)["detail"] == f"device {sid} has no stream route recorded"
        finally:
            other.remove_device(sid)


class TestAuth:
    def test_token_required_on_every_route(self, gateway_factory, make_session, launched) -> None:
        gw = gateway_factory(token=TOKEN)
        sid = launched.session_id
        make_session(State.AWAITING_CODE, session_id=sid)
        for path in ("/sessions", f"/sessions/{sid}", f"/sessions/{sid}/stream", f"/vnc/{sid}/vnc.html"):
            assert gw.client.get(path).status_code == 401, path
            assert gw.client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert gw.client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert gw.client.post("/sessions", json={}).status_code == 401
        for path in ("/sessions", f"/vnc/{sid}/vnc.html"):  # a token in a query string is never accepted
            assert gw.client.get(path, params={"token": TOKEN}).status_code == 401
        assert gw.client.get("/healthz").status_code == 200
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(f"{gw.ws_url}/vnc/{sid}/websockify", subprotocols=["binary"], open_timeout=5)
        assert refused.value.response.status_code == 401


class TestLogging:
    def test_access_log_lines_never_carry_the_token(self) -> None:
        import logging

        from provisioner.gateway.app import RedactTokens

        record = logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            (
                "127.0.0.1:5000",
                "GET",
                f"/vnc/abcdefghijkm/vnc.html?autoconnect=1&token={TOKEN}&x=1",
                "1.1",
                200,
            ),
            None,
        )
        assert RedactTokens().filter(record)
        line = record.getMessage()
        assert TOKEN not in line and "token=***&x=1" in line and "autoconnect=1" in line
