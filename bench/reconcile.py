"""Benchmark: one reconcile observation + plan, our way against inspecting containers one by one.

    .venv/bin/python bench/reconcile.py [--sessions 10000] [--live 100] [--repeat 5]

Sets up a throwaway PostgreSQL cluster (migrated with the real migrations) with ``--sessions``
session rows (all but ``--live`` terminal; one lease each, bulk inserted) and, on the running
Docker engine, two real containers per live session (``sleep infinity`` on the device-stub image,
no network, with our ownership labels under a bench instance id). Then, side by side:

* ours: the database clock, one query for non-terminal sessions, one for open leases, one label-filtered container
  list (reconciler.observe), then the pure plan();
* the old way: the same session query, then for every live session an inspection of its device
  and of its stream by name (2 Docker calls per session), then the lease query.

Prints the median of each over the repetitions, the ratio, and the database statements and
Docker API calls each made. Everything it creates is removed at the end; loopback only.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker  # noqa: E402
from sqlalchemy import event, insert  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from cli.local_postgres import throwaway  # noqa: E402
from reconciler import Observed, Policy, observe, plan  # noqa: E402
from reconciler.model import ContainerView, LeaseView, SessionView  # noqa: E402
from runtime import ContainerRuntime  # noqa: E402
from runtime.errors import ContainerMissing  # noqa: E402
from runtime.model import LABEL_INSTANCE, Role, container_name, ownership_labels  # noqa: E402
from store import LeaseOutcome, LeaseRow, SessionRow, State, make_engine, new_session_id  # noqa: E402
from store import repository as repo  # noqa: E402
from store.migrate import upgrade  # noqa: E402

IMAGE = "provisioner/device-stub:latest"
TERMINAL_MIX = (State.RELEASED, State.EXPIRED, State.FAILED, State.CANCELLED, State.ORPHANED)
POLICY = Policy(grace=timedelta(seconds=60), provisioning_deadline=timedelta(seconds=120))


class Counter:
    """Counts SQL statements on an engine and HTTP requests of a Docker client."""

    def __init__(self, engine, api) -> None:
        self.sql = 0
        self.docker = 0
        event.listen(engine, "before_cursor_execute", self._on_sql)
        send = api.send

        def counting_send(request, **kwargs):
            self.docker += 1
            return send(request, **kwargs)

        api.send = counting_send

    def _on_sql(self, *args) -> None:
        self.sql += 1

    def reset(self) -> None:
        self.sql = self.docker = 0


def seed_database(sessions: sessionmaker[Session], total: int, live: int) -> list[str]:
    """Bulk-insert ``total`` sessions, ``live`` of them verified, one lease each; returns live ids."""
    now = datetime.now(UTC)
    rows, leases, live_ids = [], [], []
    for i in range(total):
        sid = new_session_id()
        is_live = i < live
        state = State.VERIFIED if is_live else TERMINAL_MIX[i % len(TERMINAL_MIX)]
        if is_live:
            live_ids.append(sid)
        rows.append(
            {
                "id": sid,
                "state": state.value,
                "service": "tg",
                "country": "0",
                "device_profile": "stub",
                "flow_run_id": None,
                "expires_at": now + timedelta(hours=1),
                "verification_code": "123456" if is_live else None,
            }
        )
        outcome = LeaseOutcome.FINISHED if is_live or i % 3 else LeaseOutcome.CANCELLED
        leases.append(
            {
                "session_id": sid,
                "provider": "sms_activate",
                "service": "tg",
                "country": "0",
                "attempt": 1,
                "activation_id": str(100000 + i),
                "outcome": outcome.value,
            }
        )
    with sessions.begin() as db:
        db.execute(insert(SessionRow), rows)
        db.execute(insert(LeaseRow), leases)
    return live_ids


def start_containers(client: docker.DockerClient, instance_id: str, live_ids: list[str]) -> int:
    def one(args: tuple[str, Role]) -> None:
        sid, role = args
        client.containers.run(
            IMAGE,
            entrypoint=["sleep", "infinity"],
            name=container_name(instance_id, sid, role),
            labels=ownership_labels(instance_id, sid, role),
            network_mode="none",
            detach=True,
            mem_limit="16m",
        )

    work = [(sid, role) for sid in live_ids for role in (Role.DEVICE, Role.STREAM)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, work))
    return len(work)


def remove_containers(client: docker.DockerClient, instance_id: str) -> int:
    rows = client.api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={instance_id}"})
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda r: client.api.remove_container(r["Id"], force=True, v=True), rows))
    return len(rows)


def no_flow_runs(run_ids) -> dict[str, str | None]:
    return dict.fromkeys(run_ids)


def ours(sessions: sessionmaker[Session], runtime: ContainerRuntime) -> int:
    with sessions() as db:
        observed = observe(db, runtime, no_flow_runs)
    return len(plan(observed, POLICY))


def old_way(sessions: sessionmaker[Session], runtime: ContainerRuntime) -> int:
    """What a reconciler without the label-filtered list does: inspect every session's containers."""
    with sessions() as db:
        rows = repo.list_nonterminal_sessions(db)
        now = datetime.now(UTC)
        views = [
            SessionView(s.id, State(s.state), s.flow_run_id, s.updated_at, s.expires_at, True) for s in rows
        ]
        containers = []
        for s in rows:
            for role in (Role.DEVICE, Role.STREAM):
                name = runtime.name_for(s.id, role)
                try:
                    attrs = runtime._inspect(name)
                except ContainerMissing:
                    continue
                containers.append(
                    ContainerView(attrs["Id"], name, s.id, role.value, attrs["State"]["Status"], None)
                )
        leases = [
            LeaseView(
                x.id, x.session_id, x.provider, x.activation_id, x.outcome, x.requested_at, x.retry_after
            )
            for x in repo.list_open_leases(db)
        ]
    observed = Observed(now=now, sessions=views, leases=leases, containers=containers, flow_runs={})
    return len(plan(observed, POLICY))


def measure(name: str, fn: Callable[[], int], counter: Counter, repeat: int) -> dict:
    fn()  # warm-up: connections, caches
    times = []
    for _ in range(repeat):
        counter.reset()
        started = time.perf_counter()
        actions = fn()
        times.append(time.perf_counter() - started)
    return {
        "name": name,
        "median_s": statistics.median(times),
        "sql": counter.sql,
        "docker": counter.docker,
        "actions": actions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000, help="session rows (default 10000)")
    parser.add_argument(
        "--live", type=int, default=100, help="live sessions, 2 containers each (default 100)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per method (default 5)")
    args = parser.parse_args(argv)
    if not 0 < args.live <= min(args.sessions, 500):
        parser.error("--live must be between 1 and min(--sessions, 500)")

    client = docker.from_env()
    client.ping()
    client.images.get(IMAGE)  # fails early with ImageNotFound: run scripts/build-images
    instance_id = "bench-" + secrets.token_hex(3)
    cluster = throwaway()
    engine = None
    try:
        print(f"starting a throwaway PostgreSQL in {cluster.data_dir} ...", flush=True)
        cluster.start()
        url = cluster.create_database("bench")
        upgrade(url)
        engine = make_engine(url)
        sessions = sessionmaker(engine, expire_on_commit=False)
        started = time.perf_counter()
        live_ids = seed_database(sessions, args.sessions, args.live)
        print(
            f"inserted {args.sessions} sessions ({args.live} live) and {args.sessions} leases "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        started = time.perf_counter()
        made = start_containers(client, instance_id, live_ids)
        print(
            f"started {made} containers (instance {instance_id}) in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        runtime = ContainerRuntime(
            client, instance_id=instance_id, network="none", stream_image=IMAGE, profiles={}
        )
        counter = Counter(engine, client.api)
        results = [
            measure(
                "ours: now() + 2 queries + 1 label-filtered list",
                lambda: ours(sessions, runtime),
                counter,
                args.repeat,
            ),
            measure(
                "old: 2 queries + 2 inspections per live session",
                lambda: old_way(sessions, runtime),
                counter,
                args.repeat,
            ),
        ]
        print()
        print(f"{'method':50} {'median':>10} {'SQL':>5} {'Docker':>7} {'actions':>8}")
        for r in results:
            print(
                f"{r['name']:50} {r['median_s'] * 1000:8.1f} ms {r['sql']:5} {r['docker']:7} {r['actions']:8}"
            )
        ratio = results[1]["median_s"] / results[0]["median_s"]
        print(
            f"\nold / ours = {ratio:.1f}x over {args.repeat} repetitions "
            f"({args.sessions} sessions, {args.live} live, {made} containers)"
        )
        assert results[0]["actions"] == results[1]["actions"] == 0, "a healthy world plans nothing"
    finally:
        removed = remove_containers(client, instance_id)
        print(f"removed {removed} bench containers", flush=True)
        if engine is not None:
            engine.dispose()
        cluster.stop()
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
