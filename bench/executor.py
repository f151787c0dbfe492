"""bench/executor.py: provisions waiting for late codes, on the process worker vs `provisioner executor`.

A real `prefect server start` (SQLite, its own home), `provisioner deploy`, a process worker and an
executor side by side, and two gateways on one throwaway PostgreSQL and the provider simulator: one
sends its provisions to provision/provision (a `python -m prefect.engine` process per run, the
worker polling every second), the other to provision/executor (a thread per run). Devices are warm
(profile `stub`, the pool filled before each step, so no boot is measured). For each way, in turn:

  one     1 POST with a 3 s SMS delay -> verified, --samples times (median)
  rss     10 POSTs whose codes are held back: once all 10 wait for their code, the RSS (from /proc)
          of the processes serving them (worker + its flow-run processes; the executor) against
          the same processes idle, per waiting session; then the codes arrive
  ten     10 POSTs at once with a 3 s SMS delay -> verified (median, p95)

Prints the table (markdown) and the ratios worker / executor. Runtime: about 4-6 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after ROOT: bench/gateway.py must not shadow the package

from provision import PROVIDER, bench_environment, bench_simulator  # noqa: E402

from provisioner.prefect_api.setup import HEARTBEAT_TIMEOUT_S  # noqa: E402
from tests.harness.deployed import (  # noqa: E402
    Executor,
    Worker,
    descendants,
    pause_schedules,
    prefect_server,
    provisioner_deploy,
)
from tests.harness.gateway import serve  # noqa: E402
from tests.harness.services import postgres  # noqa: E402
from tests.plugins.postgres import adopt_identity  # noqa: E402

PROFILE = "stub"
SMS_DELAY_S = 3.0
HELD_S = 600.0  # the rss step's SMS delay: no code arrives until the simulator's clock is moved
WAYS = ("worker", "executor")
ENDED = ("failed", "cancelled", "orphaned", "released", "expired")


@dataclass
class Way:
    name: str
    client: httpx.Client
    pid: int  # the serving process: the worker, or the executor
    api_url: str = ""
    one: list[float] = field(default_factory=list)
    ten: list[float] = field(default_factory=list)
    one_start: list[float] = field(default_factory=list)  # the run created -> Running (server clock)
    ten_start: list[float] = field(default_factory=list)
    idle_mb: float = 0.0
    waiting_mb: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def per_session_mb(self) -> float:
        return (self.waiting_mb - self.idle_mb) / 10


def rss_mb(pid: int) -> float:
    """RSS of ``pid`` and every process below it, MB."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def fill_pool(deps, wanted: int) -> None:
    """What a maintain-pool pass does, for ``wanted`` idle devices; returns when they are idle."""
    from provisioner.pool import plan_pool
    from provisioner.pool.run import act_pool, observe_pool

    actions = plan_pool(observe_pool(deps), {PROFILE: wanted}, deps.runtime.profiles, 50)
    failed = [r for r in act_pool(deps, actions) if not r.ok]
    if failed:
        raise SystemExit(f"pool fill failed: {failed[0].result}")


def post(client: httpx.Client) -> tuple[str, float]:
    t0 = time.monotonic()
    created = client.post("/sessions", json={"device_profile": PROFILE, "providers": [PROVIDER]})
    created.raise_for_status()
    return created.json()["session_id"], t0


def until(client: httpx.Client, sid: str, states: set[str], timeout_s: float = 240) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = client.get(f"/sessions/{sid}").json()["state"]
        if state in states or state in ENDED:
            return state
        time.sleep(0.05)
    return "timeout"


def verified_after(client: httpx.Client) -> tuple[str, float | None, str | None]:
    sid, t0 = post(client)
    state = until(client, sid, {"verified"})
    return (
        sid,
        (time.monotonic() - t0 if state == "verified" else None),
        (None if state == "verified" else state),
    )


def run_started_after(way: Way, sid: str) -> float | None:
    """Seconds from the session's flow run being created to its entering Running (server times)."""
    run_id = way.client.get(f"/sessions/{sid}").json()["flow_run_id"]
    run = httpx.get(f"{way.api_url}/flow_runs/{run_id}", timeout=10, trust_env=False).json()
    if not run.get("start_time"):
        return None
    started, created = (
        datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_time", "created")
    )
    return (started - created).total_seconds()


def release(client: httpx.Client, sids: list[str]) -> None:
    for sid in sids:
        with contextlib.suppress(httpx.HTTPError):
            client.delete(f"/sessions/{sid}")
    for sid in sids:
        until(client, sid, {"released"}, timeout_s=120)


def step_one(way: Way, deps, sim, samples: int) -> None:
    sim.set_sms_delay(SMS_DELAY_S)
    for _ in range(samples):
        fill_pool(deps, 1)
        sid, took, error = verified_after(way.client)
        if took is None:
            way.errors.append(f"one {sid}: {error}")
        else:
            way.one.append(took)
            way.one_start.append(run_started_after(way, sid) or 0.0)
        release(way.client, [sid])


def step_rss(way: Way, deps, sim) -> None:
    fill_pool(deps, 10)
    way.idle_mb = rss_mb(way.pid)
    sim.set_sms_delay(HELD_S)
    sids = [post(way.client)[0] for _ in range(10)]
    with ThreadPoolExecutor(10) as pool:
        reached = list(pool.map(lambda sid: until(way.client, sid, {"awaiting_code"}), sids))
    if any(state != "awaiting_code" for state in reached):
        way.errors.append(f"rss: not all waiting: {reached}")
    time.sleep(2)  # the runs settle in their wait (first polls done)
    for _ in range(5):  # the highest of a few readings a moment apart
        way.waiting_mb = max(way.waiting_mb, rss_mb(way.pid))
        time.sleep(0.2)
    sim.advance(HELD_S)  # every held code arrives now
    with ThreadPoolExecutor(10) as pool:
        done = list(pool.map(lambda sid: until(way.client, sid, {"verified"}), sids))
    way.errors += [
        f"rss {sid}: {state}" for sid, state in zip(sids, done, strict=True) if state != "verified"
    ]
    release(way.client, sids)


def step_ten(way: Way, deps, sim) -> None:
    fill_pool(deps, 10)
    sim.set_sms_delay(SMS_DELAY_S)
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: verified_after(way.client), range(10)))
    for sid, took, error in results:
        if took is None:
            way.errors.append(f"ten {sid}: {error}")
        else:
            way.ten.append(took)
            way.ten_start.append(run_started_after(way, sid) or 0.0)
    release(way.client, [sid for sid, _, _ in results])


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def p95(values: list[float]) -> float | None:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)] if values else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3, help="single POSTs per way")
    args = parser.parse_args(argv)
    instance_id = "benchexec-" + secrets.token_hex(3)
    ways: dict[str, Way] = {}
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-executor-")))
        print(
            f"bench instance {instance_id}: PostgreSQL, simulator, prefect server, deploy, worker, executor ..."
        )
        database_url = stack.enter_context(postgres())
        adopt_identity(database_url, instance_id)  # the migrated database's deployment is the bench's
        sim = stack.enter_context(bench_simulator())
        env = bench_environment(
            instance_id=instance_id, database_url=database_url, sim_url=sim.base_urls[PROVIDER], slots=4
        )
        env["PROVISIONER_DATABASE__POOL_SIZE"] = "30"  # ten runs in one process, each with its session
        env["PROVISIONER_GATEWAY__PUBLIC_URL"] = "http://127.0.0.1:1"  # unused: the bench reads /sessions
        env["PROVISIONER_GATEWAY__INSECURE_NO_AUTH"] = "true"  # its gateways bind loopback
        os.environ.update(env)
        api_url, prefect_env = stack.enter_context(prefect_server(home, startup_timeout_s=120))
        deployed = provisioner_deploy(prefect_env, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
        if deployed.returncode != 0:
            raise SystemExit(f"provisioner deploy failed: {deployed.stdout[-1500:]}{deployed.stderr[-1500:]}")
        pause_schedules(api_url, ["reconcile/reconcile", "maintain-pool/maintain-pool"])
        serving_env = {
            **prefect_env,
            **env,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
        }
        worker = Worker(serving_env, home / "worker.log")
        stack.callback(worker.stop)
        executor = Executor(serving_env, home / "executor.log")
        stack.callback(executor.stop)

        from provisioner.gateway.app import create_app
        from provisioner.prefect_api.orchestrator import PrefectFlowRuns
        from provisioner.settings import get_settings
        from provisioner.steps.deps import Deps, get_deps, reset_deps
        from provisioner.store import reset_engine

        get_settings.cache_clear()
        reset_engine()
        reset_deps()
        deps = get_deps()
        stack.callback(lambda: [deps.runtime.remove(c.id) for c in deps.runtime.list_managed()])
        deps.runtime.ensure_network()
        for name, pid in (("worker", worker.proc.pid), ("executor", executor.proc.pid)):
            gateway = deps.settings.gateway.model_copy(update={"run_on": name})
            way_deps = Deps(
                settings=deps.settings.model_copy(update={"gateway": gateway}),
                sessions=deps.sessions,
                _runtime=deps.runtime,
            )
            url = stack.enter_context(serve(create_app(way_deps, runs=PrefectFlowRuns(api_url=api_url))))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=120, trust_env=False))
            ways[name] = Way(name, client, pid, api_url=api_url)
        try:
            for step in ("one", "rss", "ten"):
                for way in ways.values():
                    print(f"{step}: {way.name} ...", flush=True)
                    if step == "one":
                        step_one(way, deps, sim, args.samples)
                    elif step == "rss":
                        step_rss(way, deps, sim)
                    else:
                        step_ten(way, deps, sim)
        finally:
            fill_pool(deps, 0)
            time.sleep(3)
            ledger = sim.ledger()
            print(f"simulator ledger: {len(ledger.purchases)} purchases, settled: {ledger.settled}")
    w, e = ways["worker"], ways["executor"]
    print()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"Warm `{PROFILE}` devices, SMS delay {SMS_DELAY_S:g} s; POST -> verified in seconds; RSS in MB.")
    print("| | process worker | executor | worker / executor |")
    print("| --- | --- | --- | --- |")

    def row(label: str, a: float | None, b: float | None, digits: int = 2) -> None:
        ratio = f"{a / b:.1f}x" if a and b else "-"
        print(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {ratio} |")

    row(f"1 POST -> verified, median of {args.samples}", med(w.one), med(e.one))
    row("10 at once -> verified, median", med(w.ten), med(e.ten))
    row("10 at once -> verified, p95", p95(w.ten), p95(e.ten))
    row("1 POST: run created -> Running, median", med(w.one_start), med(e.one_start))
    row("10 at once: run created -> Running, median", med(w.ten_start), med(e.ten_start))
    row("RSS idle (serving processes)", w.idle_mb, e.idle_mb, 0)
    row("RSS with 10 waiting for codes", w.waiting_mb, e.waiting_mb, 0)
    row("RSS per waiting session", w.per_session_mb, e.per_session_mb, 1)
    errors = w.errors + e.errors
    for error in errors:
        print(f"  {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
