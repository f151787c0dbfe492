"""Benchmark: the provision flow against plain Python making the same provider and Docker calls.

    .venv/bin/python bench/provision.py [--runs N] [--concurrency 1,10] [--modes flow,baseline,baseline-db]

Measures, per provision, trigger -> stream ready and trigger -> verified (the simulator delivers
the code at once), for up to three modes run side by side, in alternating order, in one run:

  flow         flows.provision.provision_session: Prefect (a real temporary API server from
               prefect_test_harness, flows run in-process, one thread each) + the PostgreSQL store.
  baseline     no Prefect, no DB: the same provider client (Deps.provider) and the same
               ContainerRuntime calls in the same order as provisioning.devices.boot_device:
               acquire; launch_device || launch_stream; wait_device_ready; wait_stream_ready;
               check until the code; finish.
  baseline-db  no Prefect, with the store: the flow's body made of the plain functions its tasks
               wrap (create session, devices.claim_device/boot_session_device, numbers.rent_number,
               codes.wait_for_code, numbers.finish_number, transition to verified, heartbeat).

"Stream ready" is the session's ready_at (set when it becomes awaiting_code) for the DB modes and
the moment wait_stream_ready returns for the baseline; "verified" is the verified event's time,
or the moment finish() returns. All against time.time() taken when the provision is triggered.
Each round starts `concurrency` provisions together (a barrier), then releases them untimed, so
every round starts with no session containers running. One untimed warm-up provision per mode.

Everything is set up here and torn down at the end: a throwaway PostgreSQL cluster (migrated),
the simulator in-process on a free loopback port (SMS delay 0, a large balance and stock), a
bench-specific instance id and Docker network (containers are found by label and removed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.services import postgres, simulator  # noqa: E402

MODES = ("flow", "baseline", "baseline-db")
PROVIDER = "sms_activate"
SERVICE, COUNTRY = "tg", "0"  # the SMS-Activate protocol's own codes, for the plain baselines
PROFILE = "stub"
SIM_KEY = "bench-key-" + secrets.token_hex(4)
ACTOR = "bench"
P90_MIN_SAMPLES = 10


@dataclass
class Sample:
    mode: str
    concurrency: int
    session_id: str
    t0: float  # time.time() at the trigger
    ready: float | None = None  # seconds after t0
    verified: float | None = None
    returned: float | None = None
    error: str | None = None
    marks: dict[str, float] = field(default_factory=dict)  # DB modes: state -> seconds after t0


@dataclass
class Bench:
    """What the provisions of every mode share: the process's Deps and the simulator."""

    deps: Any
    sim: Any
    request: Any
    timeout_s: float | None
    started: list[Sample] = field(default_factory=list)  # every provision begun, for the cleanup


# -- environment --------------------------------------------------------------------------------


def bench_environment(*, instance_id: str, database_url: str, sim_url: str, slots: int) -> dict[str, str]:
    """The PROVISIONER_* variables of the bench: only sms_activate (on the simulator) configured."""
    return {
        "PROVISIONER_INSTANCE_ID": instance_id,
        "PROVISIONER_DATABASE__URL": database_url,
        # Every in-process flow shares this pool (a worker would give each run its own process).
        "PROVISIONER_DATABASE__POOL_SIZE": str(2 * slots + 4),
        "PROVISIONER_DOCKER__NETWORK": f"provisioner-{instance_id}",
        "PROVISIONER_DOCKER__LAUNCH_SLOTS": str(slots),
        "PROVISIONER_DOCKER__READINESS_TIMEOUT_S": "120",
        "PROVISIONER_DOCKER__DEFAULT_PROFILE": PROFILE,
        "PROVISIONER_DEFAULTS__SERVICE": "telegram",  # canonical: tg / 0 at SMS-Activate
        "PROVISIONER_DEFAULTS__COUNTRY": "RU",
        "PROVISIONER_DEFAULTS__CODE_TIMEOUT_S": "60",
        "PROVISIONER_DEFAULTS__NUMBER_ATTEMPTS": "1",
        "PROVISIONER_PROVIDERS__ORDER": f'["{PROVIDER}"]',
        f"PROVISIONER_PROVIDERS__{PROVIDER.upper()}__API_KEY": SIM_KEY,
        f"PROVISIONER_PROVIDERS__{PROVIDER.upper()}__BASE_URL": sim_url,
        f"PROVISIONER_PROVIDERS__{PROVIDER.upper()}__TIMEOUT_S": "30",
        "PROVISIONER_PROVIDERS__SMS_MAN__API_KEY": "",
        "PROVISIONER_PROVIDERS__ONLINESIM__API_KEY": "",
    }


@contextlib.contextmanager
def bench_simulator() -> Iterator[Any]:
    """The simulator with a large balance and stock, codes at once."""
    with simulator({SIM_KEY: "100000000"}) as sim:
        sim.set_sms_delay(0)
        sim.set_offer(SERVICE, COUNTRY, price="10.00", count=1_000_000)
        yield sim


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """The Prefect server named by PREFECT_API_URL when set (e.g. `prefect server start` on
    PostgreSQL, as in production), else the test harness's temporary SQLite-backed server."""
    import os

    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def prefect_api_label() -> str:
    import os

    url = os.environ.get("PREFECT_API_URL")
    return f"Prefect server at {url}" if url else "prefect_test_harness API server (subprocess, SQLite)"


# -- the three ways to provision ----------------------------------------------------------------


def provision_flow(bench: Bench, sample: Sample) -> None:
    from flows.provision import provision_session

    state = provision_session(request=bench.request, session_id=sample.session_id, return_state=True)
    sample.returned = time.time() - sample.t0
    if not state.is_completed():
        sample.error = f"flow run {state.name}: {state.message}"
    # ready and verified come from the store after the round (times_from_store)


def provision_baseline(bench: Bench, sample: Sample) -> None:
    """The flow's provider and Docker calls, in the same order, with nothing recorded anywhere."""
    from providers.base import Cancelled, CodeReceived, Expired
    from provisioner.steps.codes import poll_delay

    deps, sid = bench.deps, sample.session_id
    provider, runtime = deps.provider(PROVIDER), deps.runtime
    lease = provider.acquire(SERVICE, COUNTRY, None)
    try:
        runtime.ensure_network()
        with ThreadPoolExecutor(max_workers=2) as pool:
            device = pool.submit(runtime.launch_device, sid, PROFILE)
            stream = pool.submit(runtime.launch_stream, sid)
            device.result()
            stream.result()
        runtime.wait_device_ready(sid, PROFILE, bench.timeout_s)
        runtime.wait_stream_ready(sid, bench.timeout_s)
        sample.ready = time.time() - sample.t0
        defaults = deps.settings.defaults
        started = time.monotonic()
        deadline = started + defaults.code_timeout_s
        for _ in range(10_000):
            result = provider.check(lease)
            if isinstance(result, CodeReceived):
                break
            if isinstance(result, Cancelled | Expired) or time.monotonic() >= deadline:
                raise RuntimeError(f"no code: {result}")
            waited = time.monotonic() - started
            time.sleep(poll_delay(waited, initial_s=defaults.poll_initial_s, max_s=defaults.poll_max_s))
        provider.finish(lease)
    except BaseException:
        with contextlib.suppress(Exception):
            provider.cancel(lease)
        raise
    sample.verified = sample.returned = time.time() - sample.t0


def provision_baseline_db(bench: Bench, sample: Sample) -> None:
    """The flow's body from the plain functions its tasks wrap, without Prefect."""
    from datetime import timedelta

    from provisioner.steps import codes, numbers
    from provisioner.steps.boot import boot_session_device
    from provisioner.steps.devices import claim_device, number_rented
    from provisioner.steps.lifecycle import Heartbeat, compensate
    from provisioner.steps.request import resolve
    from provisioner.store import State
    from provisioner.store import repository as repo

    deps, sid = bench.deps, sample.session_id
    plan = resolve(bench.request, deps.settings)
    with deps.sessions.begin() as db:
        repo.create_session(
            db,
            service=plan.service,
            country=plan.country,
            device_profile=plan.device_profile,
            ttl=timedelta(seconds=plan.ttl_s),
            actor=ACTOR,
            session_id=sid,
        )
    try:
        with Heartbeat(deps, sid, deps.settings.reconcile.heartbeat_interval_s):
            if claim_device(deps, sid, profile=plan.device_profile, actor=ACTOR) is None:
                boot_session_device(deps, sid, profile=plan.device_profile, actor=ACTOR)
            rented = numbers.rent_number(deps, sid, plan.rent, attempt=1, actor=ACTOR)
            number_rented(deps, sid, provider=rented.provider, actor=ACTOR)
            result = codes.wait_for_code(
                deps, sid, rented.lease_id, timeout_s=plan.code_timeout_s, actor=ACTOR
            )
            if not result.code:
                raise RuntimeError(result.reason)
            numbers.finish_number(deps, rented.lease_id)
            with deps.sessions.begin() as db:
                repo.transition(
                    db, sid, State.VERIFIED, reason="code received", actor=ACTOR, expected=State.AWAITING_CODE
                )
    except BaseException as exc:
        compensate(deps, sid, reason=f"{type(exc).__name__}: {exc}", actor=ACTOR)
        raise
    sample.returned = time.time() - sample.t0


PROVISION: dict[str, Callable[[Bench, Sample], None]] = {
    "flow": provision_flow,
    "baseline": provision_baseline,
    "baseline-db": provision_baseline_db,
}


def times_from_store(bench: Bench, samples: list[Sample]) -> None:
    """ready = the session's ready_at; verified and the phase marks = the first event entering each
    state; all against the trigger."""
    from sqlalchemy import select

    from provisioner.store import EventRow, SessionRow

    by_id = {s.session_id: s for s in samples}
    with bench.deps.sessions() as db:
        events = db.execute(
            select(EventRow.session_id, EventRow.to_state, EventRow.at)
            .where(EventRow.session_id.in_(by_id))
            .order_by(EventRow.id)
        )
        for sid, to_state, at in events:
            by_id[sid].marks.setdefault(to_state, at.timestamp() - by_id[sid].t0)
        rows = db.execute(
            select(SessionRow.id, SessionRow.state, SessionRow.ready_at).where(SessionRow.id.in_(by_id))
        )
        for sid, state, ready_at in rows:
            sample = by_id[sid]
            if ready_at is not None:
                sample.ready = ready_at.timestamp() - sample.t0
            sample.verified = sample.marks.get("verified")
            if state != "verified" and sample.error is None:
                sample.error = f"session ended {state}"


# -- rounds -------------------------------------------------------------------------------------


def run_round(bench: Bench, mode: str, concurrency: int) -> list[Sample]:
    """Start `concurrency` provisions of one mode together and wait for all of them."""
    from provisioner.store import new_session_id

    barrier = threading.Barrier(concurrency)
    samples = [Sample(mode, concurrency, new_session_id(), 0.0) for _ in range(concurrency)]
    bench.started += samples

    def one(sample: Sample) -> None:
        barrier.wait(timeout=60)
        sample.t0 = time.time()
        try:
            PROVISION[mode](bench, sample)
        except Exception as exc:
            sample.error = f"{type(exc).__name__}: {exc}"[:300]

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"bench-{mode}") as pool:
        list(pool.map(one, samples))
    if mode != "baseline":
        times_from_store(bench, samples)
    return samples


def release_all(bench: Bench, samples: list[Sample]) -> None:
    """End the round's sessions (untimed): store sessions released, baseline containers removed."""
    from provisioner.steps.lifecycle import release
    from provisioner.store import repository as repo

    def end(sample: Sample) -> None:
        try:
            if sample.mode == "baseline":
                bench.deps.runtime.remove_device(sample.session_id)
                return
            with bench.deps.sessions() as db:
                exists = repo.find_session(db, sample.session_id) is not None
            if exists:
                release(bench.deps, sample.session_id, actor=ACTOR, reason="bench round over")
            else:
                bench.deps.runtime.remove_device(sample.session_id)
        except Exception as exc:
            print(f"  release of {sample.session_id} failed: {exc}", file=sys.stderr)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(end, samples))


def remove_bench_containers(deps: Any) -> int:
    """Every container labelled with the bench instance id, then its network(s)."""
    from provisioner.runtime.model import LABEL_INSTANCE

    runtime = deps.runtime
    leftovers = runtime.list_managed()
    for container in leftovers:
        with contextlib.suppress(Exception):
            runtime.remove(container.id)
    for network in runtime.client.api.networks(filters={"label": f"{LABEL_INSTANCE}={runtime.instance_id}"}):
        with contextlib.suppress(Exception):
            runtime.client.api.remove_network(network["Id"])
    return len(leftovers)


# -- report -------------------------------------------------------------------------------------


def p90(values: list[float]) -> float | None:
    if len(values) < P90_MIN_SAMPLES:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(samples: list[Sample], modes: list[str], concurrencies: list[int]) -> str:
    baselines = [m for m in modes if m != "flow"]
    header = ["conc", "metric", "n"]
    for mode in modes:
        header += [f"{mode} med", f"{mode} p90"]
    if "flow" in modes:
        header += [f"flow/{b}" for b in baselines]
    rows = [header]
    for conc in concurrencies:
        for metric in ("ready", "verified"):
            medians: dict[str, float | None] = {}
            row = [str(conc), metric]
            cells, counts = [], []
            for mode in modes:
                values = [
                    getattr(s, metric)
                    for s in samples
                    if s.mode == mode
                    and s.concurrency == conc
                    and s.error is None
                    and getattr(s, metric) is not None
                ]
                counts.append(str(len(values)))
                medians[mode] = statistics.median(values) if values else None
                cells += [fmt(medians[mode]), fmt(p90(values))]
            row += ["/".join(sorted(set(counts))), *cells]
            if "flow" in modes:
                for b in baselines:
                    flow_med, base_med = medians["flow"], medians[b]
                    row.append(f"{flow_med / base_med:.2f}x" if flow_med and base_med else "-")
            rows.append(row)
    return table(rows)


PHASES = ("requested", "number_acquired", "launching", "awaiting_code", "verified")


def phase_report(samples: list[Sample], modes: list[str], concurrencies: list[int]) -> str | None:
    """Median seconds after the trigger at which sessions entered each state (DB modes only)."""
    db_modes = [m for m in modes if m != "baseline"]
    if not db_modes:
        return None
    header = ["conc", "state entered", *db_modes]
    if len(db_modes) == 2:
        header.append("diff")
    rows = [header]
    for conc in concurrencies:
        for phase in PHASES:
            medians = []
            for mode in db_modes:
                values = [
                    s.marks[phase]
                    for s in samples
                    if s.mode == mode and s.concurrency == conc and s.error is None and phase in s.marks
                ]
                medians.append(statistics.median(values) if values else None)
            row = [str(conc), phase, *(fmt(m) for m in medians)]
            if len(db_modes) == 2:
                a, b = medians
                row.append(f"{a - b:+.2f}" if a is not None and b is not None else "-")
            rows.append(row)
    return table(rows)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds per mode and concurrency (default 3)")
    parser.add_argument("--concurrency", default="1,10", help="comma-separated concurrent provisions")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--warmup", type=int, default=1, help="untimed provisions per mode first")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(args.modes) - set(MODES):
        parser.error(f"unknown mode(s) {sorted(unknown)}")
    if args.runs < 1 or not args.concurrency or min(args.concurrency) < 1:
        parser.error("--runs and every concurrency must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before prefect is imported: INFO still goes to the API (as in production), not to the console.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # loopback only
    # docker-py keeps 10 connections; 10 provisions x 2 parallel calls overflow it (harmless, noisy).
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    instance_id = "bench-" + secrets.token_hex(3)
    slots = max(args.concurrency)
    started = time.monotonic()
    samples: list[Sample] = []
    bench: Bench | None = None
    with contextlib.ExitStack() as stack:
        print(f"bench instance {instance_id}: starting PostgreSQL, the simulator, the Prefect API ...")
        database_url = stack.enter_context(postgres("provisioner_bench"))
        sim = stack.enter_context(bench_simulator())
        os.environ.update(
            bench_environment(
                instance_id=instance_id,
                database_url=database_url,
                sim_url=sim.base_urls[PROVIDER],
                slots=slots,
            )
        )
        from provisioner.settings import get_settings
        from provisioner.steps.deps import get_deps, reset_deps
        from provisioner.steps.request import ProvisionRequest
        from provisioner.store import reset_engine

        get_settings.cache_clear()
        reset_engine()
        reset_deps()
        stack.callback(reset_deps)
        stack.callback(reset_engine)  # before the cluster stops (callbacks run last-in first-out)
        stack.enter_context(prefect_api())
        deps = get_deps()
        bench = Bench(
            deps=deps,
            sim=sim,
            request=ProvisionRequest(providers=[PROVIDER], device_profile=PROFILE, number_attempts=1),
            timeout_s=deps.settings.docker.readiness_timeout_s,
        )
        try:
            # Created once up front: concurrent first launches on a fresh host race to create it
            # and can leave two networks of the same name (see ensure_network).
            deps.runtime.ensure_network()
            print(f"ready after {time.monotonic() - started:.1f} s; warm-up ({args.warmup} per mode) ...")
            for _ in range(args.warmup):
                for mode in args.modes:
                    warm = run_round(bench, mode, 1)
                    release_all(bench, warm)
                    if warm[0].error:
                        print(f"  warm-up {mode} failed: {warm[0].error}", file=sys.stderr)
            for conc in args.concurrency:
                for run in range(args.runs):
                    # Rotate the order so no mode always runs right after another's release.
                    order = args.modes[run % len(args.modes) :] + args.modes[: run % len(args.modes)]
                    for mode in order:
                        t = time.monotonic()
                        batch = run_round(bench, mode, conc)
                        samples += batch
                        failed = [s for s in batch if s.error]
                        print(
                            f"  concurrency {conc:>2} run {run + 1}/{args.runs} {mode:<11} "
                            f"{time.monotonic() - t:5.1f} s" + (f"  {len(failed)} failed" if failed else "")
                        )
                        for s in failed[:3]:
                            print(f"    {s.session_id}: {s.error}", file=sys.stderr)
                        release_all(bench, batch)
        finally:
            release_all(bench, bench.started)
            removed = remove_bench_containers(deps)
            ledger = sim.ledger()
            print(
                f"cleanup: {removed} leftover container(s) removed; simulator ledger: "
                f"{len(ledger.purchases)} purchases, settled={ledger.settled}"
            )
    import prefect

    errors = [s for s in samples if s.error]
    print()
    print(
        f"provision latency, seconds from trigger (medians; p90 from {P90_MIN_SAMPLES} samples): "
        f"{os.cpu_count()} CPU(s), Prefect {prefect.__version__}, {args.runs} run(s) per cell, "
        f"sms delay 0, profile {PROFILE}"
    )
    print(report(samples, args.modes, args.concurrency))
    print(
        "ready = stream answers (flow: sessions.ready_at); verified = code received and number finished "
        "(flow: the verified event).\n"
        "baseline: provider client + ContainerRuntime calls only, NO DB; baseline-db: the flow's plain "
        "functions with the PostgreSQL store, no Prefect.\n"
        f"flow: {prefect_api_label()} on the same CPUs; flows in-process, one "
        "thread each; all modes share one DB pool, Docker client and provider client.\n"
        "flow: number_acquired -> launching includes the wait for the Prefect global concurrency slot."
    )
    if phases := phase_report(samples, args.modes, args.concurrency):
        print()
        print("where the time goes: median seconds after the trigger at which the session entered each state")
        print(phases)
    if errors:
        print(f"{len(errors)} provision(s) failed and are not in the table", file=sys.stderr)
    print(f"total {time.monotonic() - started:.0f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
