"""Benchmark: waiting for 100 codes, per-session polling (today's fallback) vs the code watcher,
polling and with webhooks, side by side in one run.

    .venv/bin/python bench/codes.py [--leases 100] [--window 20] [--seed 7]

Sets up a throwaway PostgreSQL cluster (real migrations), the provider simulator and the gateway
(uvicorn, for webhooks) in this process. Each scenario rents ``--leases`` numbers, half from
OnlineSim (can list open activations in one call) and half from an SMS-Activate copy without
getActiveActivations (cannot),
starts one waiting "flow" per lease (provisioning.codes.wait_for_code in a thread, LISTENing on its
lease), and delivers every code at a random time within ``--window`` seconds. Scenarios:

* per-session: no watcher, so each waiter polls its own lease (backoff 1 s -> 10 s, the defaults);
* watcher: `provisioner watch`'s loops (poll interval 2 s, 5 requests/s per provider);
* webhooks: the watcher, and the simulator POSTs each SMS to the gateway's webhook route.

Prints provider requests per second over the window (per provider), and the latencies
SMS at the provider -> code recorded in the lease -> waiting flow woken (median, p95), plus the
gateway's webhook answer time. Loopback only; everything is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECRET = "bench-webhook-secret"
KEY = "bench-key"
PROVIDERS = ("onlinesim", "sms_activate")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} / {pct(values, 0.95):.3f}" if values else "-"


def configure(url: str, sim, watcher: bool) -> None:
    os.environ["PROVISIONER_DATABASE__URL"] = url
    for name in PROVIDERS:
        os.environ[f"PROVISIONER_PROVIDERS__{name.upper()}__API_KEY"] = KEY
        os.environ[f"PROVISIONER_PROVIDERS__{name.upper()}__BASE_URL"] = sim.base_urls[name]
    os.environ["PROVISIONER_CODES__WEBHOOK_SECRET"] = SECRET
    os.environ["PROVISIONER_DATABASE__POOL_SIZE"] = "40"
    # Without a watcher nobody beats: a stale-after of 1 s makes the waiters poll at once.
    os.environ["PROVISIONER_CODES__STALE_AFTER_S"] = "10" if watcher else "1"
    os.environ["PROVISIONER_GATEWAY__INSECURE_NO_AUTH"] = "true"  # its gateway binds loopback


def run_scenario(name: str, url: str, sim, *, leases: int, window: float, seed: int) -> dict:
    from provisioner.gateway.app import create_app
    from provisioner.settings import get_settings
    from provisioner.steps import codes
    from provisioner.steps.deps import get_deps, reset_deps
    from provisioner.steps.numbers import rent_number
    from provisioner.steps.request import RentRequest
    from provisioner.store import LeaseRow, get_engine, reset_engine
    from provisioner.store import repository as repo
    from provisioner.watcher.loop import ProviderWatcher

    watching = name != "per-session"
    configure(url, sim, watching)
    get_settings.cache_clear()
    reset_engine()
    reset_deps()
    deps = get_deps()
    sim.reset()
    sim.configure(sms_activate_lists_activations=False)  # a copy of the protocol that cannot list
    with sim.state.lock:
        for offer in sim.state.offers.values():
            offer.count = 10 * leases
        sim.state.balances[KEY] = Decimal("1000000")

    rented: list[tuple[str, int, str, str]] = []  # session, lease, activation, provider
    for n in range(leases):
        provider = PROVIDERS[n % 2]
        with deps.sessions.begin() as db:
            sid = repo.create_session(db, service="telegram", country="RU", actor="bench").id
        r = rent_number(deps, sid, RentRequest("telegram", "RU", (provider,)), attempt=1, actor="bench")
        rented.append((sid, r.lease_id, r.activation_id, provider))

    stop = threading.Event()
    threads: list[threading.Thread] = []
    watchers = []
    server = None
    if watching:
        for provider in PROVIDERS:
            w = ProviderWatcher(deps, provider, stop, name=f"bench-{provider}")
            watchers.append(w)
            threads.append(threading.Thread(target=w.run, daemon=True))
            threads[-1].start()
        for w in watchers:
            w.holding.wait(10)
    if name == "webhooks":
        from tests.harness.gateway import RecordingRuns, serve

        server = serve(create_app(deps, runs=RecordingRuns()))
        base = server.__enter__()
        for provider in PROVIDERS:
            sim.set_webhook(provider, f"{base}/webhooks/{provider}/{SECRET}")

    woken: dict[int, float] = {}
    results: dict[int, str | None] = {}

    def wait(sid: str, lease_id: int) -> None:
        result = codes.wait_for_code(deps, sid, lease_id, timeout_s=window + 60, actor="bench")
        woken[lease_id] = time.time()
        results[lease_id] = result.code

    waiters = [threading.Thread(target=wait, args=(sid, lid), daemon=True) for sid, lid, _, _ in rented]
    for t in waiters:
        t.start()
    time.sleep(1.0)  # every waiter is in its wait before the clock starts
    rng = random.Random(seed)
    schedule = sorted((rng.uniform(0, window), lid, aid) for _, lid, aid, _ in rented)
    sms_at: dict[int, float] = {}
    sim.calls.clear()
    started = time.monotonic()
    for at, lease_id, activation_id in schedule:
        delay = started + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sms_at[lease_id] = time.time()
        sim.deliver(activation_id, f"{100000 + lease_id}")
    for t in waiters:
        t.join(timeout=120)
    elapsed = time.monotonic() - started
    calls = list(sim.calls)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    sent = sim.webhooks_sent
    if server is not None:
        for provider in PROVIDERS:
            sim.set_webhook(provider, None)
        server.__exit__(None, None, None)

    with deps.sessions() as db:
        recorded = {
            row.id: row.code_at.timestamp()
            for row in db.query(LeaseRow).filter(LeaseRow.code_at.is_not(None))
        }
    ok = sum(1 for _, lid, _, _ in rented if results.get(lid) == f"{100000 + lid}")
    per_provider = {p: sum(1 for proto, _, _ in calls if proto == p) for p in PROVIDERS}
    to_record = [recorded[lid] - sms_at[lid] for lid in sms_at if lid in recorded]
    to_wake = [woken[lid] - recorded[lid] for lid in sms_at if lid in recorded and lid in woken]
    by_provider = {
        p: [recorded[lid] - sms_at[lid] for _, lid, _, prov in rented if prov == p and lid in recorded]
        for p in PROVIDERS
    }
    with get_engine().begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text("TRUNCATE session_events, number_leases, sessions, code_watchers RESTART IDENTITY CASCADE")
        )
    reset_deps()
    return {
        "name": name,
        "ok": ok,
        "elapsed": elapsed,
        "requests": per_provider,
        "rps": {p: n / elapsed for p, n in per_provider.items()},
        "to_record": to_record,
        "to_wake": to_wake,
        "by_provider": by_provider,
        "webhook_answer": [s.duration_s for s in sent if s.status == 200],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=int, default=100)
    parser.add_argument(
        "--window", type=float, default=20.0, help="codes arrive at random within this many s"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from tests.harness.services import postgres, simulator

    print("starting a throwaway PostgreSQL ...", flush=True)
    with postgres() as url, simulator({KEY: "1000000"}) as sim:
        rows = []
        for name in ("per-session", "watcher", "webhooks"):
            print(f"scenario {name}: {args.leases} leases, codes over {args.window:g} s ...", flush=True)
            rows.append(run_scenario(name, url, sim, leases=args.leases, window=args.window, seed=args.seed))

    print()
    print(
        "| scenario | codes ok | OnlineSim req/s | SMS-Activate req/s | SMS -> recorded, median / p95 s "
        "| (OnlineSim / SMS-Activate medians) | recorded -> flow woken, median / p95 s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        medians = " / ".join(f"{statistics.median(v):.2f}" if v else "-" for v in r["by_provider"].values())
        print(
            f"| {r['name']} | {r['ok']}/{args.leases} | {r['rps']['onlinesim']:.2f} | {r['rps']['sms_activate']:.2f} "
            f"| {fmt(r['to_record'])} | {medians} | {fmt(r['to_wake'])} |"
        )
    hooks = rows[-1]["webhook_answer"]
    if hooks:
        print(
            f"\nwebhook answer time (gateway, {len(hooks)} webhooks): median {statistics.median(hooks) * 1000:.1f} ms, "
            f"p95 {pct(hooks, 0.95) * 1000:.1f} ms"
        )
    base = rows[0]
    for r in rows[1:]:
        total, total_base = sum(r["requests"].values()), sum(base["requests"].values())
        print(
            f"{r['name']}: {total} provider requests vs {total_base} with per-session polling "
            f"({total_base / max(total, 1):.1f}x fewer)"
        )


if __name__ == "__main__":
    main()
