"""Who may see what, against the real gateway and database: two clients and an operator, the one
owner check walked over every route the app declares, the number and code for the owner, signed
session links, the fail-closed guards and per-client limits. No token, link or code may reach a
log line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from sqlalchemy import update
from starlette.routing import Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from provisioner.gateway import api
from provisioner.gateway.app import RedactTokens, create_app
from provisioner.gateway.auth import link_cookie, startup_refusal
from provisioner.gateway.owners import unchecked_session_routes
from provisioner.steps.links import link_key, session_page_url, sign
from provisioner.store import State, new_session_id
from provisioner.store import clients as clientrepo
from provisioner.store import codes as coderepo
from provisioner.store import repository as repo
from provisioner.store.migrate import upgrade
from provisioner.store.models import SessionRow
from tests.harness.gateway import TOKEN, make_deps, serve
from tests.harness.services import free_port
from tests.plugins.postgres import create_database, drop_database
from tests.support import CODE, PHONE, rent_and_receive

pytestmark = pytest.mark.docker

JSON = {"Content-Type": "application/json"}
# Routes that name no session, each with why it needs no owner check.
NOT_SESSION_ROUTES = {
    "/healthz",  # open: liveness
    "/readyz",  # open: readiness
    "/version",
    "/openapi.json",  # the API document (a token, like every route but the health checks)
    "/sessions",  # GET lists the caller's own; POST creates one owned by the caller
    "/metrics",  # operators only
    "/webhooks/{provider}/{secret}",  # providers, with their own secret
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def people(db_sessions):
    """Two clients, alice and bob, and their tokens."""
    with db_sessions.begin() as db:
        _, alice = clientrepo.create_client(db, "alice")
        _, bob = clientrepo.create_client(db, "bob")
    return {"alice": alice, "bob": bob}


@pytest.fixture
def logs(caplog):
    """Every log line of the test (gateway threads included), to check nothing secret is in them."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="httpcore")  # connection traces of the test's own client
    yield caplog
    logging.getLogger("uvicorn.access").removeHandler(caplog.handler)


# The test's own clients log what they send (websockets at DEBUG, httpx at INFO): theirs are not
# the gateway's lines.
CLIENT_LOG = logging.getLogger("tests.client")


def hear_the_access_log(logs) -> None:
    """uvicorn's access log (off at the tests' log level, and not propagated) into the capture,
    with the gateway's redaction on it as in production."""
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.INFO)
    access.addHandler(logs.handler)


def no_secrets_in(logs, gw, *secrets: str) -> None:
    """No line the gateway (or anything but the test's own clients) logged carries a secret."""
    lines = [
        f"{r.name}: {r.getMessage()}"
        for r in logs.records
        if r.name != CLIENT_LOG.name
        and not (r.name.startswith(("httpx", "httpcore")) and gw.url in r.getMessage())
    ]
    assert lines, "nothing was logged: the check would pass whatever happened"
    for secret in secrets:
        leaked = [line for line in lines if secret in line]
        assert not leaked, f"a secret reached a log line: {leaked[0].replace(secret, '<secret>')[:300]}"


def own(db_sessions, session_id: str, owner: str) -> str:
    with db_sessions.begin() as db:
        db.execute(update(SessionRow).where(SessionRow.id == session_id).values(owner=owner))
    return session_id


def link_of(gw, session_id: str, owner: str, **kwargs) -> str:
    """The session page link as the API hands it out, aimed at the served gateway."""
    url = urlsplit(session_page_url(gw.deps.settings, session_id, owner, **kwargs))
    return f"{url.path}?{url.query}"


def _concrete(path: str, session_id: str) -> str:
    return path.replace("{session_id}", session_id).replace("{path:path}", "vnc.html")


class TestOwnerCheck:
    def test_every_route_naming_a_session_answers_a_stranger_as_if_it_did_not_exist(
        self, gateway_factory, make_session, launched, people, db_sessions, logs
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        hear_the_access_log(logs)
        sid = own(db_sessions, make_session(State.AWAITING_CODE, session_id=launched.session_id), "alice")
        missing = new_session_id()
        routes = create_app(gw.deps, runs=gw.runs).routes
        walked = 0
        for route in routes:
            if "{session_id}" not in route.path:
                assert route.path in NOT_SESSION_ROUTES, f"{route.path}: a new route; does it need the check?"
                continue
            if isinstance(route, WebSocketRoute):
                for target in (sid, missing):  # a stranger gets the same for alice's and for none
                    with pytest.raises(InvalidStatus) as refused:
                        ws_connect(
                            gw.ws_url + _concrete(route.path, target),
                            additional_headers=bearer(people["bob"]),
                            open_timeout=5,
                            logger=CLIENT_LOG,
                        )
                    assert refused.value.response.status_code == 404
                with ws_connect(
                    gw.ws_url + _concrete(route.path, sid).replace("vnc.html", "websockify"),
                    additional_headers=bearer(people["alice"]),
                    subprotocols=["binary"],
                    open_timeout=5,
                    logger=CLIENT_LOG,
                ) as ws:
                    assert ws.recv(timeout=5)[:3] == b"RFB"
                walked += 1
                continue
            assert isinstance(route, Route)
            for method in sorted(route.methods - {"HEAD"}):
                headers = {**bearer(people["bob"]), **JSON}
                theirs = gw.client.request(method, _concrete(route.path, sid), headers=headers)
                none = gw.client.request(method, _concrete(route.path, missing), headers=headers)
                assert theirs.status_code == 404, f"{method} {route.path}: {theirs.status_code}"
                assert theirs.json() == {**none.json(), "session_id": sid}, f"{method} {route.path}"
                if method == "GET":
                    mine = gw.client.get(_concrete(route.path, sid), headers=bearer(people["alice"]))
                    assert mine.status_code in (200, 204, 307), (
                        f"{route.path}: {mine.status_code} for its owner"
                    )
                walked += 1
        assert walked >= 9
        assert gw.runs.started == [], "a stranger's DELETE or POST started a run"
        no_secrets_in(logs, gw, TOKEN, people["alice"], people["bob"], CODE)

    def test_an_app_with_a_route_that_skips_the_check_is_refused(self, gw, monkeypatch) -> None:
        async def leaky(request):  # pragma: no cover - never served
            raise AssertionError

        forgotten = Route("/sessions/{session_id}/leak", leaky, methods=["GET"])
        assert unchecked_session_routes([forgotten]) == ["/sessions/{session_id}/leak"]
        monkeypatch.setattr(api, "routes", [*api.routes, forgotten])
        with pytest.raises(RuntimeError, match="without the owner check: /sessions/{session_id}/leak"):
            create_app(gw.deps, runs=gw.runs)

    def test_lists_show_a_client_its_own_and_an_operator_everyone(
        self, gateway_factory, make_session, people, db_sessions
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        a = own(db_sessions, make_session(State.VERIFIED), "alice")
        b = own(db_sessions, make_session(State.VERIFIED), "bob")
        prefect = make_session(State.VERIFIED)

        def ids(token: str, **params) -> set[str]:
            reply = gw.client.get("/sessions", headers=bearer(token), params=params)
            return {s["id"] for s in reply.json()["sessions"]}

        assert ids(people["alice"]) == {a}
        assert ids(people["bob"]) == {b}
        assert ids(people["bob"], owner="alice") == {b}, "a client cannot list someone else's"
        assert ids(TOKEN) == {a, b, prefect}
        assert ids(TOKEN, owner="alice") == {a} and ids(TOKEN, owner="prefect") == {prefect}
        assert gw.client.get(f"/sessions/{prefect}", headers=bearer(TOKEN)).json()["owner"] == "prefect"
        assert gw.client.get("/metrics", headers=bearer(people["alice"])).status_code == 403
        assert gw.client.get("/metrics", headers=bearer(TOKEN)).status_code == 200

    def test_a_revoked_token_is_refused_at_once(self, gateway_factory, people, db_sessions) -> None:
        gw = gateway_factory(token=TOKEN)
        assert gw.client.get("/sessions", headers=bearer(people["alice"])).status_code == 200
        with db_sessions.begin() as db:
            assert clientrepo.revoke_client(db, "alice")
        reply = gw.client.get("/sessions", headers=bearer(people["alice"]))
        assert reply.status_code == 401 and reply.json()["detail"] == "unknown or revoked token"

    def test_idempotency_keys_are_the_clients_own(self, gateway_factory, people) -> None:
        gw = gateway_factory(token=TOKEN)
        key = {"Idempotency-Key": "same-key", **JSON}
        body = {"service": "telegram"}
        a1 = gw.client.post("/sessions", json=body, headers={**bearer(people["alice"]), **key}).json()
        b1 = gw.client.post("/sessions", json=body, headers={**bearer(people["bob"]), **key}).json()
        a2 = gw.client.post("/sessions", json=body, headers={**bearer(people["alice"]), **key}).json()
        assert a1["session_id"] != b1["session_id"], "bob's key found alice's session"
        assert a2["session_id"] == a1["session_id"] and len(gw.runs.started) == 2
        assert (
            gw.client.get(f"/sessions/{b1['session_id']}", headers=bearer(people["bob"])).json()["owner"]
            == "bob"
        )


class TestTheResultReachesItsOwner:
    def test_owner_reads_the_full_number_and_the_code(
        self, gateway_factory, make_session, people, db_sessions, logs
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        hear_the_access_log(logs)
        sid = own(db_sessions, make_session(State.AWAITING_CODE), "alice")
        rent_and_receive(db_sessions, sid)
        body = gw.client.get(f"/sessions/{sid}", headers=bearer(people["alice"])).json()
        assert body["phone"] == PHONE and body["code"] == CODE
        assert [c["code"] for c in body["codes"]] == [CODE] and body["codes"][0]["at"]
        assert body["page_url"].startswith(f"http://gateway.test/s/{sid}?link=")
        no_secrets_in(logs, gw, TOKEN, people["alice"], CODE, PHONE, body["page_url"].split("link=")[1])

    def test_the_long_poll_answers_as_soon_as_the_code_is_recorded(
        self, gateway_factory, make_session, people, db_sessions
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        sid = own(db_sessions, make_session(State.AWAITING_CODE), "alice")
        lease_id = rent_and_receive(db_sessions, sid, code=None)
        started = time.monotonic()
        empty = gw.client.get(f"/sessions/{sid}/code", params={"wait": 1}, headers=bearer(people["alice"]))
        assert empty.status_code == 204 and 0.9 < time.monotonic() - started < 5

        recorded_at: list[float] = []

        def record_later() -> None:
            time.sleep(1.0)  # the poll below is waiting by then
            with db_sessions.begin() as db:
                coderepo.record_code(db, lease_id, CODE, via="test", actor="test")
            recorded_at.append(time.monotonic())

        writer = threading.Thread(target=record_later)
        writer.start()
        reply = gw.client.get(f"/sessions/{sid}/code", params={"wait": 30}, headers=bearer(people["alice"]))
        answered = time.monotonic()
        writer.join()
        assert reply.status_code == 200 and reply.json()["code"] == CODE
        assert answered - recorded_at[0] < 2.0, "the long poll did not answer soon after the code"
        # A code newer than the one already seen: none yet, so the wait ends empty.
        after = reply.json()["at"]
        again = gw.client.get(
            f"/sessions/{sid}/code", params={"wait": 0.5, "after": after}, headers=bearer(people["alice"])
        )
        assert again.status_code == 204


class TestSessionLinks:
    def test_a_link_opens_its_session_only_and_sets_a_strict_cookie(
        self, gateway_factory, make_session, launched, people, db_sessions, logs
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        hear_the_access_log(logs)
        sid = own(db_sessions, make_session(State.AWAITING_CODE, session_id=launched.session_id), "alice")
        other = own(db_sessions, make_session(State.AWAITING_CODE), "alice")
        rent_and_receive(db_sessions, sid)
        link = link_of(gw, sid, "alice")
        page = gw.client.get(link)
        assert page.status_code == 200 and PHONE in page.text and sid in page.text
        cookie = page.headers["set-cookie"]
        assert cookie.startswith(f"{link_cookie(sid)}=")
        assert all(flag in cookie for flag in ("HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"))
        assert "Secure" not in cookie  # the public URL is http here
        # The cookie (kept by the client) opens the page, stream, status and code of this session...
        assert gw.client.get(f"/s/{sid}").status_code == 200
        assert gw.client.get(f"/vnc/{sid}/vnc.html").status_code == 200
        assert gw.client.get(f"/sessions/{sid}").json()["code"] == CODE
        jar = {link_cookie(sid): gw.client.cookies[link_cookie(sid)]}
        with ws_connect(
            f"{gw.ws_url}/vnc/{sid}/websockify",
            subprotocols=["binary"],
            additional_headers={"Cookie": f"{link_cookie(sid)}={jar[link_cookie(sid)]}"},
            open_timeout=5,
            logger=CLIENT_LOG,
        ) as ws:
            assert ws.recv(timeout=5)[:3] == b"RFB"
        # ...and nothing else: not the list, not another session of the same owner.
        assert gw.client.get("/sessions").status_code == 401
        assert gw.client.get(f"/sessions/{other}").status_code == 401
        assert gw.client.post("/sessions", json={}).status_code == 401
        stolen = {link_cookie(other): jar[link_cookie(sid)]}
        gw.client.cookies.clear()
        assert gw.client.get(f"/s/{other}", cookies=stolen).status_code == 401
        no_secrets_in(logs, gw, TOKEN, people["alice"], CODE, jar[link_cookie(sid)])
        assert f"/s/{sid}?link=***" in logs.text, "the access log did not show the (redacted) link"

    def test_altered_expired_and_other_session_links_are_refused(
        self, gateway_factory, make_session, people, db_sessions
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        sid = own(db_sessions, make_session(State.AWAITING_CODE), "alice")
        other = own(db_sessions, make_session(State.AWAITING_CODE), "alice")
        key = link_key(gw.deps.settings)
        good = sign(key, sid, "alice", int(time.time()) + 600)
        expires, signature = good.split(".")
        refused = {
            "altered signature": f"/s/{sid}?link={expires}.{signature[:-2]}AA",
            "altered expiry": f"/s/{sid}?link={int(expires) + 3600}.{signature}",
            "another session's link": f"/s/{other}?link={good}",
            "another owner": f"/s/{sid}?link={sign(key, sid, 'bob', int(expires))}",
            "expired": f"/s/{sid}?link={sign(key, sid, 'alice', int(time.time()) - 1)}",
            "signed with another key": f"/s/{sid}?link={sign(b'k' * 32, sid, 'alice', int(expires))}",
            "a token in the query": f"/s/{sid}?token={TOKEN}",
        }
        for why, path in refused.items():
            reply = gw.client.get(path)
            assert reply.status_code == 401, why
            assert "set-cookie" not in reply.headers, why
        assert gw.client.get(f"/s/{sid}?link={good}").status_code == 200

    def test_a_released_session_or_a_revoked_owner_closes_the_link(
        self, gateway_factory, make_session, people, db_sessions
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        released = own(db_sessions, make_session(State.AWAITING_CODE), "alice")
        link = link_of(gw, released, "alice")
        assert gw.client.get(link).status_code == 200
        with db_sessions.begin() as db:
            repo.transition(db, released, State.RELEASING, reason="test", actor="test")
            repo.transition(db, released, State.RELEASED, reason="test", actor="test")
        assert gw.client.get(link).status_code == 401
        assert gw.client.get(f"/s/{released}").status_code == 401, "the cookie outlived the session"
        assert gw.client.get(f"/sessions/{released}").status_code == 401

        revoked = own(db_sessions, make_session(State.AWAITING_CODE), "bob")
        assert gw.client.get(link_of(gw, revoked, "bob")).status_code == 200
        with db_sessions.begin() as db:
            clientrepo.revoke_client(db, "bob")
        reply = gw.client.get(f"/s/{revoked}")
        assert reply.status_code == 401 and "revoked" in reply.json()["detail"]

    def test_a_link_expires_with_the_session_by_default(
        self, gateway_factory, make_session, db_sessions
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        sid = make_session(State.AWAITING_CODE)
        ends = datetime.now(UTC) + timedelta(seconds=1)
        link = link_of(gw, sid, "prefect", expires_at=ends)
        assert gw.client.get(link).status_code == 200
        time.sleep(max((ends - datetime.now(UTC)).total_seconds(), 0) + 0.1)  # until the expiry passes
        gw.client.cookies.clear()
        assert gw.client.get(link).status_code == 401


class TestFailClosed:
    def test_the_gateway_refuses_to_start_open(self, db_sessions, runtime) -> None:
        closed = make_deps(db_sessions, runtime, token=None)
        closed.settings.gateway.insecure_no_auth = False
        refusal = startup_refusal(closed)
        assert refusal and "PROVISIONER_GATEWAY__TOKEN" in refusal and "provisioner clients add" in refusal
        with pytest.raises(RuntimeError, match="did not start"), serve(create_app(closed)):
            pass
        exposed = make_deps(db_sessions, runtime, token=None)
        exposed.settings.gateway.host = "0.0.0.0"
        assert "loopback" in startup_refusal(exposed)
        with db_sessions.begin() as db:
            clientrepo.create_client(db, "carol")
        assert "LINK_SECRET" in startup_refusal(closed), "links would have no key"
        closed.settings.gateway.link_secret = SecretStr("a-link-secret-of-this-deployment")
        assert startup_refusal(closed) is None

    def test_the_served_gateway_exits_saying_what_to_set(self, postgres_server) -> None:
        name = f"provisioner_open_{uuid.uuid4().hex[:8]}"
        url = create_database(postgres_server, name)
        try:
            upgrade(url)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
            env |= {"PROVISIONER_DATABASE__URL": url, "PROVISIONER_GATEWAY__PORT": str(free_port())}
            done = subprocess.run(
                [sys.executable, "-m", "provisioner.gateway"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            drop_database(postgres_server, name)
        assert done.returncode != 0
        said = " ".join(done.stderr.split())
        assert "will not start" in said and "PROVISIONER_GATEWAY__TOKEN" in said and "clients add" in said
        assert "Traceback" not in done.stderr

    def test_text_plain_posts_are_415_and_start_nothing(self, gateway_factory, people, db_sessions) -> None:
        gw = gateway_factory(token=TOKEN)
        for headers in ({"Content-Type": "text/plain"}, {}):
            reply = gw.client.post(
                "/sessions", content=b'{"service": "telegram"}', headers={**bearer(TOKEN), **headers}
            )
            assert reply.status_code == 415, headers
        assert gw.runs.started == []
        with db_sessions() as db:
            assert repo.list_sessions(db) == []

    def test_a_foreign_origin_websocket_and_a_wrong_host_are_refused(
        self, gateway_factory, make_session, launched
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        sid = make_session(State.AWAITING_CODE, session_id=launched.session_id)
        url = f"{gw.ws_url}/vnc/{sid}/websockify"
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(
                url,
                origin="https://evil.example",
                additional_headers=bearer(TOKEN),
                open_timeout=5,
                logger=CLIENT_LOG,
            )
        assert refused.value.response.status_code == 403
        for origin in ("http://gateway.test", gw.url):  # the public URL, and the gateway's own address
            with ws_connect(
                url,
                origin=origin,
                additional_headers=bearer(TOKEN),
                subprotocols=["binary"],
                open_timeout=5,
                logger=CLIENT_LOG,
            ) as ws:
                assert ws.recv(timeout=5)[:3] == b"RFB"
        wrong = gw.client.get("/sessions", headers={**bearer(TOKEN), "Host": "rebound.example"})
        assert wrong.status_code == 400 and wrong.json()["reason"] == "unknown host"
        public = gw.client.get("/sessions", headers={**bearer(TOKEN), "Host": "gateway.test"})
        assert public.status_code == 200

    def test_log_lines_never_carry_a_token_a_link_or_a_bearer(self) -> None:
        record = logging.LogRecord(
            "uvicorn.error",
            logging.ERROR,
            __file__,
            1,
            "Exception in ASGI application: %s",
            (f"GET /s/abcdefghijkm?link=123.sig-value Authorization: Bearer {TOKEN}",),
            None,
        )
        assert RedactTokens().filter(record)
        line = record.getMessage()
        assert TOKEN not in line and "sig-value" not in line and "link=***" in line


class TestLimits:
    def test_the_session_past_the_limit_is_429_and_nothing_is_bought(
        self, gateway_factory, db_sessions
    ) -> None:
        gw = gateway_factory(token=TOKEN)
        with db_sessions.begin() as db:
            _, token = clientrepo.create_client(db, "dave", max_sessions=2, rate_per_min=None)
        for _ in range(2):
            assert gw.client.post("/sessions", json={}, headers=bearer(token)).status_code == 202
        third = gw.client.post("/sessions", json={}, headers=bearer(token))
        assert third.status_code == 429 and 1 <= int(third.headers["Retry-After"]) <= 3600
        assert "limit is 2" in third.json()["detail"]
        assert len(gw.runs.started) == 2, "a run (a purchase) was started past the limit"
        with db_sessions() as db:
            assert len(repo.list_sessions(db, owner="dave")) == 2
        first = repo.list_sessions(db_sessions(), owner="dave")[0].id
        assert gw.client.delete(f"/sessions/{first}", headers=bearer(token)).status_code in (200, 202)
        with db_sessions.begin() as db:  # its release run ends it, as the flow would
            db.execute(update(SessionRow).where(SessionRow.id == first).values(state="released"))
        assert gw.client.post("/sessions", json={}, headers=bearer(token)).status_code == 202

    def test_the_rate_per_minute_is_429_with_retry_after(self, gateway_factory, db_sessions) -> None:
        gw = gateway_factory(token=TOKEN)
        with db_sessions.begin() as db:
            _, token = clientrepo.create_client(db, "erin", max_sessions=None, rate_per_min=2)
        assert [
            gw.client.post("/sessions", json={}, headers=bearer(token)).status_code for _ in range(2)
        ] == [
            202,
            202,
        ]
        third = gw.client.post("/sessions", json={}, headers=bearer(token))
        assert third.status_code == 429 and 1 <= int(third.headers["Retry-After"]) <= 61
        assert len(gw.runs.started) == 2
        # The operator token has no limits.
        assert gw.client.post("/sessions", json={}, headers=bearer(TOKEN)).status_code == 202
