"""The code watcher against the simulator and PostgreSQL: listing, per-lease budget, rate limits,
lost webhooks, and a standby taking over from a watcher killed with SIGKILL."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

from provisioner.store import LeaseRow
from provisioner.store import codes as store_codes
from provisioner.store import repository as repo
from provisioner.watcher.budget import TokenBucket
from tests.codes.support import WATCHER_ENV, running_watcher
from tests.plugins.prefect_env import provisioner_environment
from tests.plugins.simulator import SIM_KEY
from tests.support import rent, wait_for

ROOT = Path(__file__).resolve().parents[2]


def lease_codes(deps, lease_ids: list[int]) -> dict[int, str | None]:
    with deps.sessions() as db:
        return {i: db.get_one(LeaseRow, i).code for i in lease_ids}


def watcher_events(deps, session_id: str) -> list[str]:
    with deps.sessions() as db:
        return [e.reason for e in repo.recent_events(db, session_id) if e.reason.endswith("(watcher)")]


def rich_account(sim) -> None:
    sim.set_offer("tg", "0", price="1.00", count=1000)
    with sim.state.lock:
        sim.state.balances[SIM_KEY] = Decimal("100000")


class TestListingProvider:
    def test_one_listing_call_per_interval_serves_100_waiting_leases(self, codes_env, sim):
        deps = codes_env
        rich_account(sim)
        rented = [rent(deps, "onlinesim") for _ in range(100)]
        sim.calls.clear()
        with running_watcher(deps, "onlinesim") as watcher:
            started = time.monotonic()
            listings = lambda: [p for _, a, p in sim.calls if a == "getState" and "tzid" not in p]  # noqa: E731
            wait_for(lambda: len(listings()) >= 5, timeout=20)
            elapsed = time.monotonic() - started
            calls = list(sim.calls)
            assert watcher.mode == "list"
            assert len(calls) == len(listings()) >= 5  # nothing but listings: no per-lease call
            assert elapsed >= 4 * 0.5 * 0.9  # one per poll interval (0.5 s), not faster
            delivered = {lease_id: f"{500000 + n}" for n, (_, lease_id, _) in enumerate(rented[:3])}
            for (_, _, activation_id), code in zip(rented[:3], delivered.values(), strict=True):
                sim.deliver(activation_id, code)
            wait_for(lambda: all(lease_codes(deps, list(delivered)).values()), timeout=10)
        assert lease_codes(deps, list(delivered)) == delivered
        sid, _, activation_id = rented[0]
        assert watcher_events(deps, sid) == [f"code received on onlinesim:{activation_id} (watcher)"]
        assert set(lease_codes(deps, [lease_id for _, lease_id, _ in rented[3:]]).values()) == {None}

    def test_sms_activate_provider_with_get_active_activations_is_listed_too(self, codes_env, sim):
        deps = codes_env
        rented = [rent(deps, "sms_activate") for _ in range(5)]
        sim.calls.clear()
        with running_watcher(deps, "sms_activate") as watcher:
            sim.deliver(rented[0][2], "313131")
            wait_for(lambda: lease_codes(deps, [rented[0][1]])[rented[0][1]], timeout=10)
            assert watcher.mode == "list"
        actions = {a for _, a, _ in sim.calls}
        assert actions == {"getActiveActivations"}  # no getStatus per lease
        assert lease_codes(deps, [rented[0][1]]) == {rented[0][1]: "313131"}


class TestPerLeaseProvider:
    def test_each_waiting_lease_is_checked_and_its_code_recorded_once(self, codes_env, sim):
        deps = codes_env
        sim.configure(sms_activate_lists_activations=False)  # a copy of the protocol that cannot list
        rented = [rent(deps, "sms_activate") for _ in range(3)]
        with running_watcher(deps, "sms_activate") as watcher:
            for n, (_, _, activation_id) in enumerate(rented):
                sim.deliver(activation_id, f"70000{n}")
            ids = [lease_id for _, lease_id, _ in rented]
            wait_for(lambda: all(lease_codes(deps, ids).values()), timeout=10)
            assert watcher.mode == "each"
        assert lease_codes(deps, ids) == {ids[n]: f"70000{n}" for n in range(3)}
        for sid, _, activation_id in rented:
            assert watcher_events(deps, sid) == [f"code received on sms_activate:{activation_id} (watcher)"]

    def test_rate_limit_replies_slow_the_watcher_down(self, codes_env, sim):
        deps = codes_env
        sim.configure(sms_activate_lists_activations=False)
        rented = [rent(deps, "sms_activate") for _ in range(3)]
        for n, (_, _, activation_id) in enumerate(rented):
            sim.deliver(activation_id, f"80000{n}")
        sim.calls.clear()
        sim.inject("rate_limit", protocol="sms_activate", action="getStatus", times=5)  # HTTP 429
        with running_watcher(deps, "sms_activate") as watcher:
            watcher.bucket = TokenBucket(rate=20, burst=1)
            started = time.monotonic()
            ids = [lease_id for _, lease_id, _ in rented]
            wait_for(lambda: all(lease_codes(deps, ids).values()), timeout=30)
            elapsed = time.monotonic() - started
        checks = [p for _, a, p in sim.calls if a == "getStatus"]
        # 5 refused + one successful check per lease: no lease is checked again once recorded.
        assert len(checks) == 5 + 3
        # Halving 20/s five times: waits of 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s before the next calls.
        assert elapsed >= 2.5
        assert watcher.bucket.rate < 20

    def test_a_failing_status_check_does_not_stop_the_round(self, codes_env, sim):
        deps = codes_env
        sim.configure(sms_activate_lists_activations=False)
        rented = [rent(deps, "sms_activate") for _ in range(3)]
        for n, (_, _, activation_id) in enumerate(rented):
            sim.deliver(activation_id, f"60000{n}")
        sim.inject("http", status=502, protocol="sms_activate", action="getStatus", times=1)
        with running_watcher(deps, "sms_activate"):
            ids = [lease_id for _, lease_id, _ in rented]
            # The first lease's check fails; the other two are recorded in that same first round.
            wait_for(lambda: all(lease_codes(deps, ids[1:]).values()), timeout=10)
            checks = [p for _, a, p in sim.calls if a == "getStatus"]
            assert [p["id"] for p in checks[:3]] == [aid for _, _, aid in rented]
            wait_for(lambda: lease_codes(deps, ids[:1])[ids[0]], timeout=10)
        assert lease_codes(deps, ids) == {ids[n]: f"60000{n}" for n in range(3)}


class TestLostWebhook:
    def test_a_lost_webhook_is_covered_by_the_watcher(self, codes_env, sim):
        deps = codes_env
        sid, lease_id, activation_id = rent(deps, "sms_activate")
        sim.set_webhook("sms_activate", "http://127.0.0.1:9/webhooks/sms_activate/x", lose=1)
        with running_watcher(deps, "sms_activate"):
            sim.deliver(activation_id, "909090")
            wait_for(lambda: lease_codes(deps, [lease_id])[lease_id], timeout=10)
        assert [s.error for s in sim.webhooks_sent] == ["lost on purpose"]
        assert watcher_events(deps, sid) == [f"code received on sms_activate:{activation_id} (watcher)"]


def watcher_names(deps) -> list[tuple[str, str]]:
    with deps.sessions() as db:
        return [(r.provider, r.watcher) for r in store_codes.watchers(db)]


class TestStandby:
    def test_a_second_watcher_stands_by_while_the_first_holds_the_provider(self, codes_env, sim, caplog):
        from provisioner.watcher.loop import ProviderWatcher

        deps = codes_env
        caplog.set_level(logging.INFO, logger="provisioner.watcher.loop")
        stop = threading.Event()
        second = ProviderWatcher(deps, "sms_activate", stop, name="second")
        thread = threading.Thread(target=second.run, daemon=True)
        try:
            with running_watcher(deps, "sms_activate", name="first"):
                thread.start()
                wait_for(lambda: "second: another watcher holds sms_activate; standing by" in caplog.text)
                assert thread.is_alive() and not second.holding.is_set()
                wait_for(lambda: watcher_names(deps) == [("sms_activate", "first")], timeout=5)
            # The first stopped (and let go of its lock): the one standing by takes over.
            assert second.holding.wait(10), "the standby did not take over"
            assert thread.is_alive()
            wait_for(lambda: watcher_names(deps) == [("sms_activate", "second")], timeout=5)
        finally:
            stop.set()
            thread.join(timeout=10)

    def test_killed_watcher_is_replaced_by_the_standby(self, codes_env, sim, database_url):
        deps = codes_env
        env = {
            **os.environ,
            **provisioner_environment(
                instance_id="codes-test", sim_urls=sim.base_urls, database_url=database_url
            ),
            **WATCHER_ENV,
            "PROVISIONER_DATABASE__URL": database_url,
        }
        command = [sys.executable, "-m", "provisioner.cli", "watch", "--provider", "sms_activate"]

        def holder() -> str | None:
            with deps.sessions() as db:
                rows = store_codes.watchers(db)
                alive = store_codes.watcher_alive(db, "sms_activate", 3)
            return rows[0].watcher if rows and alive else None

        first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        second = None
        try:
            assert wait_for(holder, timeout=30).endswith(f":{first.pid}")
            second = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            standby_line = wait_for(lambda: _line_with(second, "standing by"), timeout=30)
            assert "another watcher holds sms_activate" in standby_line
            assert holder().endswith(f":{first.pid}")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert wait_for(lambda: (h := holder()) and h.endswith(f":{second.pid}"), timeout=15)
            sid, lease_id, activation_id = rent(deps, "sms_activate")
            sim.deliver(activation_id, "121212")
            wait_for(lambda: lease_codes(deps, [lease_id])[lease_id], timeout=10)
            assert watcher_events(deps, sid) == [f"code received on sms_activate:{activation_id} (watcher)"]
            second.send_signal(signal.SIGTERM)
            rest, _ = second.communicate(timeout=20)
            assert second.returncode == 0
            assert holder() is None  # a watcher that stops removes its heartbeat: flows poll at once
            output = rest + standby_line + first.stdout.read().decode()
            assert SIM_KEY not in output
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=15)


def _line_with(proc: subprocess.Popen, text: str) -> str | None:
    line = proc.stdout.readline()
    return line if text in line else None


def test_watch_without_a_provider_says_what_is_missing_and_stays_up_until_stopped(tmp_path):
    """Compose starts the watcher before anyone has set a key: it names the settings (no secret),
    stays up instead of exiting (which made `restart: unless-stopped` loop), and stops with 0."""
    password, token = "pw7Hq2xLs9", "gw-token-5b1e"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    env |= {
        "PROVISIONER_DATABASE__URL": f"postgresql+psycopg://app:{password}@127.0.0.1:9/none",
        "PROVISIONER_GATEWAY__TOKEN": token,
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(  # cwd: a directory without .env, so no key is read from the checkout's
        [sys.executable, "-m", "provisioner.cli", "watch"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = wait_for(lambda: _line_with(proc, "no SMS provider is configured"), timeout=30)
        assert proc.poll() is None  # idling, not exiting
        for name in ("SMS_MAN", "ONLINESIM", "SMS_ACTIVATE"):
            assert f"PROVISIONER_PROVIDERS__{name}__API_KEY" in line
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        output = line + rest
        assert output.count("no SMS provider is configured") == 1
        assert password not in output and token not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
