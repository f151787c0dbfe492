"""bench/pool.py: a warm device pool vs cold boots, and a pool sized by demand vs a fixed one.

A real `prefect server start` (its own home; on PostgreSQL, as deployed), `prefect deploy --all`,
a process worker, `provisioner executor` and the gateway (uvicorn, PrefectFlowRuns) on a
throwaway PostgreSQL and the provider simulator; the device profile is `stub-slow` (45 s to READY,
status-file readiness like docker-android). Side by side in one run:

  cold    POST /sessions with no idle device -> first 200 from /sessions/{id}/stream, and -> verified
  warm    the same with the pool filled (warm: 2; refilled between samples), medians of --samples
  burst   10 POSTs at once with warm: 3 (3 claimed at once, the rest cold-booted); none may fail

With --demand, instead, two sides in turn: `autoscaled` (the pool sized by demand within
[--auto-min, --auto-max]) and `fixed` (warm: --fixed, no autoscaling). Each gets --rate POSTs a
minute for --steady-s, arriving --batch at a time (default 10 at once every 150 s; --batch 1: one
every 15 s), each session released once verified (devices are consumed), then a burst of 10 POSTs
at once; the host may launch --launch-slots devices at once (10 here: stub-slow boots are waits,
not work) and hold --capacity live devices (30: a batch held, a pool refilled and devices still
being released); maintain-pool's pass (observe, size by demand, plan, act) runs every
--pool-interval-s as the deployment schedules it (a tick during a pass is skipped, as its
CANCEL_NEW limit does), and the idle devices are counted from the devices table every 2 s.
Reports the burst's streams (max, median), verified median, how many were claimed warm, and the
idle device-minutes each side cost.

The bench runs the pool's plan/act itself (so it decides when); the deployment's own schedule is
paused. Prints medians and the ratios. Runtime: about 6-8 minutes; --demand about 17 (45 s boots).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from tests.plugins.postgres import adopt_identity, create_database  # noqa: E402

PROFILE = "stub-slow"
DEMAND_SMS_DELAY_S = 3.0  # --demand: the SMS delay P2d's "verified" is measured with
BURST = 10


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
        time.sleep(0.05 if time.monotonic() - t0 < 5 else 0.5)  # a cold boot takes a minute
    sample.error = f"not ready/verified within {timeout_s} s"
    return sample


def med(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@contextlib.contextmanager
def deployed(instance_id: str, *, slots: int = 4) -> Iterator[tuple[Any, httpx.Client, Any]]:
    """The deployed path (see the module docstring) with the schedules of reconcile and
    maintain-pool paused; yields (this process's deps, a client of the gateway, the simulator).
    Every container of the bench's instance is removed at the end."""
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pool-")))
        print(
            f"bench instance {instance_id}: PostgreSQL, simulator, prefect server, deploy, worker, "
            "executor, gateway ...",
            flush=True,
        )
        database_url = stack.enter_context(postgres())
        adopt_identity(database_url, instance_id)  # the migrated database's deployment is the bench's
        sim = stack.enter_context(bench_simulator())
        env = bench_environment(
            instance_id=instance_id, database_url=database_url, sim_url=sim.base_urls[PROVIDER], slots=slots
        )
        env["PROVISIONER_DATABASE__POOL_SIZE"] = "30"  # the executor's runs share its process's pool
        env["PROVISIONER_GATEWAY__PUBLIC_URL"] = "http://127.0.0.1:1"  # unused: the bench reads /stream
        env["PROVISIONER_GATEWAY__INSECURE_NO_AUTH"] = "true"  # its gateway binds loopback
        env.pop("PROVISIONER_DOCKER__READINESS_TIMEOUT_S")  # the profile's own boot timeout
        os.environ.update(env)
        # Prefect on PostgreSQL, as deployed (compose, the deploy guide): on SQLite ten runs
        # created at once queue on its one writer for seconds each.
        prefect_db = create_database(database_url, "prefect")
        api_url, prefect_env = stack.enter_context(
            prefect_server(home, startup_timeout_s=120, database_url=prefect_db)
        )
        deploy = provisioner_deploy(prefect_env, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
        if deploy.returncode != 0:
            raise SystemExit(f"provisioner deploy failed: {deploy.stdout[-1500:]}{deploy.stderr[-1500:]}")
        # The bench fills the pool itself, and no reconcile pass runs in the middle of a sample.
        pause_schedules(api_url, ["reconcile/reconcile", "maintain-pool/maintain-pool"])
        worker_env = {
            **prefect_env,
            **env,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        }
        stack.callback(Worker(worker_env, home / "worker.log").stop)  # releases
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
            yield deps, client, sim
        finally:
            fill_pool(deps, 0)  # retire the idle devices
            time.sleep(5)  # let the release runs start before the worker stops
            print(f"simulator ledger: {len(sim.ledger().purchases)} purchases")


def release(client: httpx.Client, samples: list[Sample]) -> None:
    for s in samples:
        if s.session_id:
            with contextlib.suppress(httpx.HTTPError):
                client.delete(f"/sessions/{s.session_id}")


def warm_vs_cold(samples_wanted: int) -> int:
    samples: list[Sample] = []
    with deployed("benchpool-" + secrets.token_hex(3)) as (deps, client, sim):
        sim.set_sms_delay(0.5)
        try:
            print("cold: 3 provisions at once, no idle device ...")
            with ThreadPoolExecutor(3) as pool:
                samples += list(pool.map(lambda _: one(client, "cold", until_verified=True), range(3)))
            print("\n".join(f"  {s}" for s in samples))
            for i in range(samples_wanted):
                print(f"warm {i + 1}/{samples_wanted}: filling the pool to 2 ...")
                fill_pool(deps, 2)
                samples.append(one(client, "warm", until_verified=True))
                print(f"  {samples[-1]}")
            print(f"burst: {BURST} POSTs at once with 3 idle ...")
            fill_pool(deps, 3)
            with ThreadPoolExecutor(BURST) as pool:
                burst = list(pool.map(lambda _: one(client, "burst", until_verified=True), range(BURST)))
            samples += burst
            print("\n".join(f"  {s}" for s in burst))
        finally:
            release(client, samples)
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


@dataclass
class Side:
    """One side of the demand run: its pool bounds and what it measured."""

    name: str
    low: int  # fewest idle devices (warm)
    high: int  # most idle devices demand may grow the pool to
    capacity: int = 20  # most live devices on the host (PROVISIONER_POOL__CAPACITY)
    samples: list[Sample] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)  # each maintain-pool pass's wanted idle
    target_at_burst: int = 0
    idle_at_burst: int = 0
    idle_device_s: float = 0.0  # idle ready devices, summed over the measured time
    measured_s: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)  # load average (1 min) at the start and at the end

    def of(self, kind: str) -> list[Sample]:
        return [s for s in self.samples if s.kind == kind]


def side_deps(deps, side: Side):
    """The deployment's deps with this side's pool bounds (PROVISIONER_POOL__WARM / __MAX)."""
    from provisioner.steps.deps import Deps

    pool = deps.settings.pool.model_copy(
        update={"warm": {PROFILE: side.low}, "max": {PROFILE: side.high}, "capacity": side.capacity}
    )
    settings = deps.settings.model_copy(update={"pool": pool})
    return Deps(settings=settings, sessions=deps.sessions, _runtime=deps.runtime)


def pool_pass(deps) -> int:
    """One maintain-pool pass as flows/maintain_pool.py makes it (observe, size by demand, plan,
    act; returns once its boots are done); returns the profile's target."""
    from provisioner.pool import plan_pool
    from provisioner.pool.run import act_pool, observe_demand, observe_pool, targets_for

    observed = observe_pool(deps)
    targets = targets_for(deps, observe_demand(deps), len(observed.hosts))
    wanted = {profile: t.wanted for profile, t in targets.items() if t.wanted > 0}
    pool = deps.settings.pool
    actions = plan_pool(observed, wanted, deps.runtime.profiles, pool.capacity, pool.cool_down_s)
    for r in act_pool(deps, actions):
        if not r.ok:
            print(f"  pool: {r.action.kind} {r.action.target}: {r.result}", file=sys.stderr)
    return wanted.get(PROFILE, 0)


def keep_pool(deps, side: Side, stop: threading.Event, interval_s: float) -> None:
    """maintain-pool on its schedule: a pass at every tick; a tick during a pass is skipped."""
    start = time.monotonic()
    while not stop.wait(interval_s - (time.monotonic() - start) % interval_s):
        try:
            side.targets.append(pool_pass(deps))
        except Exception as exc:  # a failed pass is reported; the next tick runs as the schedule's would
            print(f"  pool pass failed: {type(exc).__name__}: {exc}", file=sys.stderr)


def count_idle(deps) -> int:
    """Idle, ready devices no session holds, from the devices table."""
    from provisioner.store import devices as devrepo

    with deps.sessions() as db:
        return sum(row.state == "idle" and sid is None for row, sid in devrepo.list_live_devices(db))


def count_idle_time(deps, side: Side, stop: threading.Event, every_s: float = 2.0) -> None:
    """Adds to side.idle_device_s each sample's idle count times the time until the next one."""
    start = last = time.monotonic()
    idle = count_idle(deps)
    while not stop.wait(every_s):
        now = time.monotonic()
        side.idle_device_s += idle * (now - last)
        last, idle = now, count_idle(deps)
    side.idle_device_s += idle * (time.monotonic() - last)
    side.measured_s = time.monotonic() - start


def wait_released(deps, timeout_s: float = 300) -> None:
    """Until no session holds a device (the released ones' devices are gone)."""
    from provisioner.store import devices as devrepo

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with deps.sessions() as db:
            if not any(sid or row.state == "claimed" for row, sid in devrepo.list_live_devices(db)):
                return
        time.sleep(1)
    print(f"  devices still held after {timeout_s:g} s", file=sys.stderr)


def consume(client: httpx.Client) -> Sample:
    """A steady POST: to verified, then released (its device is gone)."""
    sample = one(client, "steady", until_verified=True)
    release(client, [sample])
    return sample


def demand_side(deps, client: httpx.Client, side: Side, args: argparse.Namespace) -> None:
    """The pool as the deployment keeps it, then the steady rate, then the burst; the pool's
    passes and the idle count run throughout."""
    deps = side_deps(deps, side)
    print(f"{side.name}: pool bounds [{side.low}, {side.high}], filling it ...", flush=True)
    side.targets.append(pool_pass(deps))
    stop = threading.Event()
    threads = [
        threading.Thread(target=keep_pool, args=(deps, side, stop, args.pool_interval_s)),
        threading.Thread(target=count_idle_time, args=(deps, side, stop)),
    ]
    for thread in threads:
        thread.start()
    start, load = time.monotonic(), os.getloadavg()[0]
    period = 60 * args.batch / args.rate
    print(
        f"{side.name}: {args.rate:g} POSTs a minute, {args.batch} every {period:g} s, for "
        f"{args.steady_s:g} s ...",
        flush=True,
    )
    try:
        with ThreadPoolExecutor(32) as posts:
            steady = []
            for k in range(int(args.steady_s // period)):
                time.sleep(max(0.0, start + k * period - time.monotonic()))
                steady += [posts.submit(consume, client) for _ in range(args.batch)]
            time.sleep(max(0.0, start + args.steady_s - time.monotonic()))
            side.target_at_burst, side.idle_at_burst = side.targets[-1], count_idle(deps)
            print(f"{side.name}: burst of {BURST} with {side.idle_at_burst} idle ...", flush=True)
            with ThreadPoolExecutor(BURST) as burst:
                side.samples += list(
                    burst.map(lambda _: one(client, "burst", until_verified=True), range(BURST))
                )
            side.samples += [f.result() for f in steady]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        side.load = (load, os.getloadavg()[0])
        release(client, side.of("burst"))
    for s in side.of("burst"):
        print(f"  {s}")


def demand(args: argparse.Namespace) -> int:
    sides = [
        Side("autoscaled", args.auto_min, args.auto_max, args.capacity),
        Side("fixed", args.fixed, args.fixed, args.capacity),
    ]
    with deployed("benchdemand-" + secrets.token_hex(3), slots=args.launch_slots) as (deps, client, sim):
        sim.set_sms_delay(DEMAND_SMS_DELAY_S)
        for side in sides:
            demand_side(deps, client, side, args)
            wait_released(deps)
            fill_pool(deps, 0)  # the next side starts from its own pool
        pool = deps.settings.pool
    return demand_report(sides, args, pool)


def demand_report(sides: list[Side], args: argparse.Namespace, pool) -> int:
    print()
    print(
        f"Demand run, profile {PROFILE} (45 s boot), SMS delay {DEMAND_SMS_DELAY_S:g} s: {args.rate:g} POSTs "
        f"a minute, {args.batch} at a time, for {args.steady_s:g} s (each released once verified), then "
        f"{BURST} at once; launch slots {args.launch_slots}, capacity {args.capacity}; "
        f"maintain-pool every {args.pool_interval_s:g} s (window {pool.demand_window_s:g} s, headroom "
        f"{pool.headroom:g}, cool-down {pool.cool_down_s:g} s); times in seconds"
    )
    print(
        "| side | pool bounds | target at burst | idle at burst | steady: warm, stream median | "
        "burst: warm | burst stream median / max | burst verified median | idle device-minutes | "
        "load average |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for side in sides:
        steady, burst = side.of("steady"), side.of("burst")
        ready = [s.ready_s for s in burst if s.ready_s is not None]
        print(
            f"| {side.name} | [{side.low}, {side.high}] | {side.target_at_burst} | "
            f"{side.idle_at_burst} | {sum(s.warm for s in steady)}/{len(steady)}, "
            f"{fmt(med([s.ready_s for s in steady]))} | {sum(s.warm for s in burst)}/{len(burst)} | "
            f"{fmt(med(ready))} / {fmt(max(ready, default=None))} | "
            f"{fmt(med([s.verified_s for s in burst]))} | {side.idle_device_s / 60:.1f} "
            f"(over {side.measured_s / 60:.1f} min) | {side.load[0]:.1f} -> {side.load[1]:.1f} |"
        )
    auto, fixed = sides
    if fixed.idle_device_s:
        print(f"\nidle device-minutes: autoscaled / fixed = {auto.idle_device_s / fixed.idle_device_s:.2f}")
    auto_ready, fixed_ready = (med([s.ready_s for s in side.of("burst")]) for side in sides)
    if auto_ready and fixed_ready:
        print(f"burst stream median: autoscaled / fixed = {auto_ready / fixed_ready:.1f}x")
    for side in sides:
        burst = side.of("burst")
        every = all(s.ready_s is not None and s.ready_s <= 2 for s in burst)
        verified = med([s.verified_s for s in burst])
        print(
            f"P2d {side.name}: every burst stream <= 2 s: {'yes' if every else 'no'}; verified median "
            f"<= 15 s: {'yes' if verified is not None and verified <= 15 else 'no'}; targets by pass: "
            f"{side.targets}"
        )
    errors = [s for side in sides for s in side.samples if s.error]
    for s in errors:
        print(f"  {s.kind} {s.session_id}: {s.error}", file=sys.stderr)
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5, help="warm samples (cold: 3 at once)")
    parser.add_argument("--demand", action="store_true", help="the demand run instead (see above)")
    parser.add_argument(
        "--steady-s", type=float, default=300, help="--demand: steady demand before the burst"
    )
    parser.add_argument("--rate", type=float, default=4, help="--demand: steady POSTs a minute")
    parser.add_argument("--batch", type=int, default=BURST, help="--demand: steady POSTs sent at once")
    parser.add_argument(
        "--launch-slots", type=int, default=BURST, help="--demand: the host's launch slots (boots at once)"
    )
    parser.add_argument(
        "--pool-interval-s", type=float, default=30, help="--demand: maintain-pool's schedule (prefect.yaml)"
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=30,
        help="--demand: live devices per host (a batch held + a pool refilled + devices still releasing)",
    )
    parser.add_argument("--auto-min", type=int, default=1, help="--demand: autoscaled side's warm")
    parser.add_argument("--auto-max", type=int, default=BURST, help="--demand: autoscaled side's max")
    parser.add_argument("--fixed", type=int, default=BURST, help="--demand: the fixed side's warm")
    args = parser.parse_args(argv)
    return demand(args) if args.demand else warm_vs_cold(args.samples)


if __name__ == "__main__":
    sys.exit(main())
