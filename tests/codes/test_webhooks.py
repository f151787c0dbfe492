"""Provider webhooks through a real gateway (uvicorn), sent by the simulator over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from provisioner.gateway.app import create_app
from provisioner.gateway.auth import redact
from provisioner.gateway.webhooks import code_in
from provisioner.steps import codes
from provisioner.store import LeaseOutcome, LeaseRow
from provisioner.store import codes as store_codes
from provisioner.store import repository as repo
from tests.codes.support import GATEWAY_TOKEN, WEBHOOK_SECRET, polls_far_apart
from tests.harness.gateway import RecordingRuns, serve
from tests.support import rent, wait_for


@pytest.fixture
def gateway(codes_env) -> Iterator[str]:
    with serve(create_app(codes_env, runs=RecordingRuns())) as url:
        yield url


def hook_url(gateway: str, provider: str, secret: str = WEBHOOK_SECRET) -> str:
    return f"{gateway}/webhooks/{provider}/{secret}"


def sms_activate_body(activation_id: str, code: str | None, text: str | None = None) -> dict:
    return {
        "activationId": activation_id,
        "service": "tg",
        "text": text,
        "code": code,
        "country": 0,
        "receivedAt": "2026-11-29T10:30:00.000000Z",
    }


def code_events(deps, session_id: str) -> list[str]:
    with deps.sessions() as db:
        return [e.reason for e in repo.recent_events(db, session_id) if "code received" in e.reason]


def lease(deps, lease_id: int) -> LeaseRow:
    with deps.sessions() as db:
        return db.get_one(LeaseRow, lease_id)


class TestWebhooks:
    def test_simulator_webhook_records_the_code_and_wakes_the_waiting_flow(
        self, codes_env, sim, gateway, monkeypatch
    ):
        deps = polls_far_apart(monkeypatch)
        sid, lease_id, activation_id = rent(deps)
        with deps.sessions.begin() as db:  # a live watcher: the flow must not poll the provider
            store_codes.beat(db, "sms_activate", watcher="test:1", mode="each")
        sim.set_webhook("sms_activate", hook_url(gateway, "sms_activate"))
        sim.calls.clear()
        threading.Timer(0.3, sim.deliver, (activation_id, "246810")).start()
        result = codes.wait_for_code(deps, sid, lease_id, timeout_s=10, actor="test")
        with deps.sessions() as db:
            woke_at = db.scalar(select(func.clock_timestamp()))
        assert result == codes.CodeResult("246810", "code received")
        assert woke_at - lease(deps, lease_id).code_at < timedelta(seconds=1)  # the NOTIFY woke it
        assert [(s.activation_id, s.status) for s in sim.webhooks_sent] == [(activation_id, 200)]
        assert code_events(deps, sid) == [f"code received on sms_activate:{activation_id} (webhook)"]
        assert [a for _, a, _ in sim.calls] == []  # nobody asked the provider

    def test_duplicate_webhook_is_answered_200_and_recorded_once(self, codes_env, sim, gateway):
        deps = codes_env
        sid, lease_id, activation_id = rent(deps)
        sim.set_webhook("sms_activate", hook_url(gateway, "sms_activate"), duplicate=True)
        sim.deliver(activation_id, "135791")
        sent = wait_for(lambda: sim.webhooks_sent if len(sim.webhooks_sent) == 2 else None, timeout=10)
        assert [s.status for s in sent] == [200, 200]
        assert lease(deps, lease_id).code == "135791"
        assert code_events(deps, sid) == [f"code received on sms_activate:{activation_id} (webhook)"]
        again = httpx.post(hook_url(gateway, "sms_activate"), json=sms_activate_body(activation_id, "135791"))
        assert (again.status_code, again.json()) == (200, {"ok": True, "ignored": "duplicate"})

    def test_wrong_secret_is_401_and_writes_nothing(self, codes_env, gateway):
        deps = codes_env
        sid, lease_id, activation_id = rent(deps)
        reply = httpx.post(
            hook_url(gateway, "sms_activate", secret="not-the-secret"),
            json=sms_activate_body(activation_id, "111111"),
        )
        assert reply.status_code == 401
        assert reply.json()["reason"] == "unauthorized"
        row = lease(deps, lease_id)
        assert (row.outcome, row.code) == (LeaseOutcome.ACTIVE, None)
        assert code_events(deps, sid) == []

    def test_unknown_activation_is_answered_200_and_ignored(self, codes_env, gateway):
        deps = codes_env
        sid, lease_id, _ = rent(deps)
        reply = httpx.post(hook_url(gateway, "sms_activate"), json=sms_activate_body("99999999", "222222"))
        assert (reply.status_code, reply.json()) == (200, {"ok": True, "ignored": "unknown activation"})
        assert lease(deps, lease_id).code is None
        assert code_events(deps, sid) == []

    def test_onlinesim_new_sms_records_the_code_read_from_the_message(self, codes_env, sim, gateway):
        deps = codes_env
        sid, lease_id, activation_id = rent(deps, "onlinesim")
        sim.set_webhook("onlinesim", hook_url(gateway, "onlinesim"))
        sim.deliver(activation_id, "864202", text="Telegram code: 864202. Do not share it.")
        wait_for(lambda: sim.webhooks_sent, timeout=10)
        assert sim.webhooks_sent[0].status == 200
        assert lease(deps, lease_id).code == "864202"
        assert code_events(deps, sid) == [f"code received on onlinesim:{activation_id} (webhook)"]

    def test_sms_activate_body_with_a_null_code_takes_it_from_the_text(self, codes_env, gateway):
        deps = codes_env
        _, lease_id, activation_id = rent(deps)
        body = sms_activate_body(activation_id, None, text="Your code is 4321")
        reply = httpx.post(hook_url(gateway, "sms_activate"), json=body)
        assert (reply.status_code, reply.json()) == (200, {"ok": True, "recorded": True})
        assert lease(deps, lease_id).code == "4321"

    @pytest.mark.parametrize(
        ("content", "status", "reason"),
        [
            (b"not json", 400, "invalid webhook"),
            (b"[1, 2]", 400, "invalid webhook"),
            (b'{"code": "123456"}', 400, "invalid webhook"),
            (b'{"activationId": {"x": 1}, "code": "123456"}', 400, "invalid webhook"),
            (b'{"activationId": "1", "code": "' + b"1" * 20000 + b'"}', 413, "body too large"),
        ],
    )
    def test_bad_bodies_get_a_clear_error_and_write_nothing(
        self, codes_env, gateway, content, status, reason
    ):
        deps = codes_env
        sid, lease_id, _ = rent(deps)
        reply = httpx.post(
            hook_url(gateway, "sms_activate"), content=content, headers={"Content-Type": "application/json"}
        )
        assert (reply.status_code, reply.json()["reason"]) == (status, reason)
        assert lease(deps, lease_id).code is None
        assert code_events(deps, sid) == []

    def test_a_provider_without_webhooks_is_404(self, codes_env, gateway):
        reply = httpx.post(hook_url(gateway, "sms_man"), json={"request_id": 1})
        assert reply.status_code == 404


def test_the_secret_never_reaches_an_access_log_line():
    line = f'127.0.0.1:5000 - "POST /webhooks/sms_activate/{WEBHOOK_SECRET} HTTP/1.1" 200'
    assert WEBHOOK_SECRET not in redact(line)
    assert "/webhooks/sms_activate/***" in redact(line)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Your code is 12345", "12345"),
        ("Code: 123-456", "123456"),
        ("1234 is your code", "1234"),
        ("hello", None),
    ],
)
def test_code_in_text(text, code):
    assert code_in(text) == code


def test_database_down_answers_503_and_logs_no_secret(caplog):
    """The provider retries a 503; the log line names the route without its secret."""
    from sqlalchemy.orm import sessionmaker

    from provisioner.settings import load_settings
    from provisioner.steps.deps import Deps
    from provisioner.store import make_engine

    url = "postgresql+psycopg://nobody:nothing@127.0.0.1:1/none"  # nothing listens on port 1
    settings = load_settings(
        database={"url": url}, codes={"webhook_secret": WEBHOOK_SECRET}, gateway={"insecure_no_auth": True}
    )
    deps = Deps(settings=settings, sessions=sessionmaker(make_engine(url)))
    with serve(create_app(deps, runs=RecordingRuns())) as gateway:
        reply = httpx.post(hook_url(gateway, "sms_activate"), json=sms_activate_body("1001", "123456"))
    assert reply.status_code == 503
    assert reply.json()["reason"] == "database unavailable"
    assert "/webhooks/sms_activate/***" in caplog.text
    assert WEBHOOK_SECRET not in caplog.text


def test_metrics_show_the_watcher_heartbeat_and_waiting_leases(codes_env, gateway):
    deps = codes_env
    rent(deps)
    rent(deps)
    with deps.sessions.begin() as db:
        store_codes.beat(db, "sms_activate", watcher="test:1", mode="each")
    reply = httpx.get(f"{gateway}/metrics", headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"})
    assert reply.status_code == 200
    lines = reply.text.splitlines()
    assert 'provisioner_leases_waiting_for_code{provider="sms_activate"} 2.0' in lines
    (age,) = [
        x
        for x in lines
        if x.startswith('provisioner_code_watcher_heartbeat_age_seconds{mode="each",provider="sms_activate"}')
    ]
    assert float(age.split()[-1]) < 5
