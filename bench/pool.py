"""bench/pool.py: a warm device pool vs cold boots, through the deployed path.

A real `prefect server start` (SQLite, its own home), `prefect deploy --all`, a process worker
and the gateway (uvicorn, PrefectFlowRuns) on a throwaway PostgreSQL and the provider simulator;
the device profile is `stub-slow` (45 s to READY, status-file readiness like docker-android).
Side by side in one run:

  cold    POST /sessions with no idle device -> first 200 from /sessions/{id}/stream, and -> verified
  warm    the same with the pool filled (warm: 2; refilled between samples), medians of --samples
  burst   10 POSTs at once with warm: 3 (3 claimed at once, the rest cold-booted); none may fail

The pool is filled by the same plan/act the maintain-pool deployment runs (called here, so the
bench decides when); the deployment's own schedule is paused. Prints medians and the ratios.
Runtime: about 6-8 minutes (dominated by the 45 s boots).
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
from dataclasses import dataclass
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
    pause_schedules,
    prefect_server,
    provisioner_deploy,
)
from tests.harness.gateway import serve  # noqa: E402
from tests.harness.services import postgres  # noqa: E402

PROFILE = "stub-slow"


@dataclass
class Sample:
    kind: str
    session_id: str = ""
    ready_s: float | None = None  # POST -> first 200 from /stream
    verified_s: float | None = None  # POST -> state verified
    warm: bool = False  # the 202 carried a stream URL (a device was claimed while accepting)
    error: str | None = None


def fill_pool(deps, wanted: int) -> None:
    """What a maintain-pool pass does, for `wanted` idle stub-slow devices; returns when they are idle."""
    from provisioner.pool import plan_pool
    from provisioner.pool.run import act_pool, observe_pool

    actions = plan_pool(observe_pool(deps), {PROFILE: wanted}, deps.runtime.profiles, 50)
    results = act_pool(deps, actions)
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"pool fill failed: {failed[0].result}")


def one(client: httpx.Client, kind: str, *, until_verified: bool, timeout_s: float = 240) -> Sample:
    try:
        return _one(client, kind, until_verified=until_verified, timeout_s=timeout_s)
    except httpx.HTTPError as exc:
        return Sample(kind, error=f"{type(exc).__name__}: {exc}")


def _one(client: httpx.Client, kind: str, *, until_verified: bool, timeout_s: float) -> Sample:
    sample = Sample(kind)
    t0 = time.monotonic()
    created = client.post("/sessions", json={"device_profile": PROFILE, "providers": [PROVIDER]})
    if created.status_code != 202:
        sample.error = f"POST {created.status_code}: {created.text[:200]}"
        return sample
    sample.session_id = created.json()["session_id"]
    sample.warm = "stream_url" in created.json()
    while time.monotonic() - t0 < timeout_s:
        if sample.ready_s is None and client.get(f"/sessions/{sample.session_id}/stream").status_code == 200:
            sample.ready_s = time.monotonic() - t0
            if not until_verified:
                return sample
        if sample.ready_s is not None:
            state = client.get(f"/sessions/{sample.session_id}").json()["state"]
            if state == "verified":
                sample.verified_s = time.monotonic() - t0
                return sample
            if state in ("failed", "cancelled", "orphaned", "released", "expired"):
                sample.error = f"ended {state}"
                return sample
        time.sleep(0.05)
    sample.error = f"not ready/verified within {timeout_s} s"
    return sample


def med(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5, help="warm samples (cold: 3 at once)")
    args = parser.parse_args(argv)
    instance_id = "benchpool-" + secrets.token_hex(3)
    samples: list[Sample] = []
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pool-")))
        print(
            f"bench instance {instance_id}: PostgreSQL, simulator, prefect server, deploy, worker, gateway ..."
        )
        database_url = stack.enter_context(postgres())
        sim = stack.enter_context(bench_simulator())
        sim.set_sms_delay(0.5)
        env = bench_environment(
            instance_id=instance_id, database_url=database_url, sim_url=sim.base_urls[PROVIDER], slots=4
        )
        env["PROVISIONER_GATEWAY__PUBLIC_URL"] = "http://127.0.0.1:1"  # unused: the bench reads /stream
        env["PROVISIONER_GATEWAY__INSECURE_NO_AUTH"] = "true"  # its gateway binds loopback
        env.pop("PROVISIONER_DOCKER__READINESS_TIMEOUT_S")  # the profile's own boot timeout
        os.environ.update(env)
        api_url, prefect_env = stack.enter_context(prefect_server(home, startup_timeout_s=120))
        deployed = provisioner_deploy(prefect_env, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
        if deployed.returncode != 0:
            raise SystemExit(f"provisioner deploy failed: {deployed.stdout[-1500:]}{deployed.stderr[-1500:]}")
        # The bench fills the pool itself, and no reconcile pass runs in the middle of a sample.
        pause_schedules(api_url, ["reconcile/reconcile", "maintain-pool/maintain-pool"])
        worker_env = {
            **prefect_env,
            **env,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        }
        stack.callback(Worker(worker_env, home / "worker.log").stop)
        stack.callback(Executor(worker_env, home / "executor.log").stop)  # the gateway's provisions
        from provisioner.gateway.app import create_app
        from provisioner.prefect_api.orchestrator import PrefectFlowRuns
        from provisioner.settings import get_settings
        from provisioner.steps.deps import get_deps, reset_deps
        from provisioner.store import reset_engine

        get_settings.cache_clear()
        reset_engine()
        reset_deps()
        deps = get_deps()
        stack.callback(lambda: [deps.runtime.remove(c.id) for c in deps.runtime.list_managed()])
        deps.runtime.ensure_network()
        url = stack.enter_context(serve(create_app(deps, runs=PrefectFlowRuns(api_url=api_url))))
        client = stack.enter_context(httpx.Client(base_url=url, timeout=120, trust_env=False))
        try:
            print("cold: 3 provisions at once, no idle device ...")
            with ThreadPoolExecutor(3) as pool:
                samples += list(pool.map(lambda _: one(client, "cold", until_verified=True), range(3)))
            print("\n".join(f"  {s}" for s in samples))
            for i in range(args.samples):
                print(f"warm {i + 1}/{args.samples}: filling the pool to 2 ...")
                fill_pool(deps, 2)
                samples.append(one(client, "warm", until_verified=True))
                print(f"  {samples[-1]}")
            print("burst: 10 POSTs at once with 3 idle ...")
            fill_pool(deps, 3)
            with ThreadPoolExecutor(10) as pool:
                burst = list(pool.map(lambda _: one(client, "burst", until_verified=True), range(10)))
            samples += burst
            print("\n".join(f"  {s}" for s in burst))
        finally:
            for s in samples:
                if s.session_id:
                    with contextlib.suppress(httpx.HTTPError):
                        client.delete(f"/sessions/{s.session_id}")
            fill_pool(deps, 0)  # retire the idle devices
            time.sleep(5)  # let the release runs start before the worker stops
            ledger = sim.ledger()
            print(f"simulator ledger: {len(ledger.purchases)} purchases")
    errors = [s for s in samples if s.error]
    rows = []
    for kind in ("cold", "warm", "burst"):
        mine = [s for s in samples if s.kind == kind]
        rows.append(
            (
                kind,
                len(mine),
                sum(s.warm for s in mine),
                med([s.ready_s for s in mine]),
                med([s.verified_s for s in mine]),
            )
        )
    print()
    print(f"POST /sessions -> /stream 200 and -> verified, profile {PROFILE} (45 s boot), medians in seconds")
    print("| run | provisions | claimed warm at POST | POST -> stream 200 | POST -> verified |")
    print("| --- | --- | --- | --- | --- |")
    for kind, n, warm, ready, verified in rows:
        print(f"| {kind} | {n} | {warm} | {fmt(ready)} | {fmt(verified)} |")
    cold_ready, warm_ready = rows[0][3], rows[1][3]
    if cold_ready and warm_ready:
        print(f"\nstream ready: cold / warm = {cold_ready / warm_ready:.0f}x")
    if rows[0][4] and rows[1][4]:
        print(f"verified: cold / warm = {rows[0][4] / rows[1][4]:.1f}x")
    burst = [s for s in samples if s.kind == "burst"]
    print(
        f"burst: {len([s for s in burst if not s.error])}/{len(burst)} verified; "
        f"stream ready min {fmt(min((s.ready_s for s in burst if s.ready_s), default=None))} "
        f"max {fmt(max((s.ready_s for s in burst if s.ready_s), default=None))}"
    )
    for s in errors:
        print(f"  {s.kind} {s.session_id}: {s.error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
