"""Benchmark: one reconcile observation + plan, our way against inspecting containers one by one.

    .venv/bin/python bench/reconcile.py [--sessions 10000] [--live 100] [--repeat 5]

Sets up a throwaway PostgreSQL cluster (migrated with the real migrations) with ``--sessions``
session rows (all but ``--live`` terminal; one lease each, bulk inserted; each live session holds a
claimed device row) and, on the running Docker engine, two real containers per live session
(``sleep infinity`` on the device-stub image, created by its id as the runtime does, no network,
no healthcheck, with our ownership labels under a bench instance id). Then, side by side:

* ours: the database clock, one query each for live devices, non-terminal sessions and open
  leases, one label-filtered container list and one network list (reconciler.observe, made while
  the database is read), then the pure plan();
* the old way: the same session query, then for every live session an inspection of its device
  and of its stream by name (2 Docker calls per session), then the lease query.

Prints the median of each over the repetitions, the ratio, and the database statements and
Docker API calls each made. The egress guard's rule listing (one netguard container run per engine
and pass, whatever the number of sessions: 0.17 s here, docs/security.md) is left out of both. Everything it creates is removed at the end; loopback only.

    .venv/bin/python bench/reconcile.py --hosts 3 --live 1000 [--sessions 10000] [--by-tag]   # root

Several hosts: starts ``--hosts`` - 1 extra dockerd engines (the multihost test fixture's,
tests/plugins/docker_hosts.py), registers all of them in the hosts table, gives every live
session a claimed device row on its host, and spreads the live sessions' containers over them
round robin, created by image id as ContainerRuntime creates them (``--by-tag``: by the image's
tag, as it did before; listing those makes each engine resolve the tag once per container).
These containers are *created, not started* (2,000 running ones would take ~15 GB of shims on a
shared machine; a list call returns created and running containers alike), so the plan sees
stopped devices and plans actions for them: the measure is the pass's observation exactly as
the reconcile flow makes it (reconciler.observe over a HostsRuntime: the host rows, per host
engine one container list and one network list call, all at once, while the database is read)
plus the pure plan, not its acting.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
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

from provisioner.reconciler import Observed, Policy, observe, plan  # noqa: E402
from provisioner.reconciler.model import ContainerView, LeaseView, SessionView  # noqa: E402
from provisioner.runtime import ContainerRuntime  # noqa: E402
from provisioner.runtime.errors import ContainerMissing  # noqa: E402
from provisioner.runtime.hosts import HostEngines  # noqa: E402
from provisioner.runtime.model import LABEL_IMAGE, LABEL_INSTANCE, Role, container_name, ownership_labels  # noqa: E402
from provisioner.runtime.table import HostsRuntime  # noqa: E402
from provisioner.store import (  # noqa: E402
    DeviceRow,
    DeviceState,
    LeaseOutcome,
    LeaseRow,
    SessionRow,
    State,
    make_engine,
    new_session_id,
)
from provisioner.store import hosts as hostrepo  # noqa: E402
from provisioner.store import leases as lease_repo  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from tests.harness.services import postgres  # noqa: E402

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


def seed_database(
    sessions: sessionmaker[Session], total: int, live: int, hosts: list[str] | None = None
) -> list[str]:
    """Bulk-insert ``total`` sessions, ``live`` of them verified, one lease each; returns live ids.
    With ``hosts``: each live session holds a claimed device row (same id) on them, round robin."""
    now = datetime.now(UTC)
    rows, leases, live_ids, devices = [], [], [], []
    for i in range(total):
        sid = new_session_id()
        is_live = i < live
        state = State.VERIFIED if is_live else TERMINAL_MIX[i % len(TERMINAL_MIX)]
        if is_live:
            live_ids.append(sid)
            if hosts:
                devices.append(
                    {
                        "id": sid,
                        "profile": "stub",
                        "host": hosts[i % len(hosts)],
                        "state": DeviceState.CLAIMED.value,
                        "device_container": container_name("bench", sid, Role.DEVICE),
                        "stream_container": container_name("bench", sid, Role.STREAM),
                        "stream_route": f"127.0.0.1:{20000 + i}",
                    }
                )
        rows.append(
            {
                "id": sid,
                "device_id": sid if is_live and hosts else None,
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
        if devices:
            db.execute(insert(DeviceRow), devices)
        db.execute(insert(SessionRow), rows)
        db.execute(insert(LeaseRow), leases)
    return live_ids


def start_containers(client: docker.DockerClient, instance_id: str, live_ids: list[str]) -> int:
    runtime = ContainerRuntime(
        client, instance_id=instance_id, network="none", stream_image=IMAGE, profiles={}
    )
    image_id = runtime.image_id(IMAGE)  # as the runtime creates them (see create_containers)

    def one(args: tuple[str, Role]) -> None:
        sid, role = args
        client.containers.run(
            image_id,
            entrypoint=["sleep", "infinity"],
            name=container_name(instance_id, sid, role),
            labels={**ownership_labels(instance_id, sid, role), LABEL_IMAGE: IMAGE},
            network_mode="none",
            healthcheck={"test": ["NONE"]},  # the stub's check fails without its VNC server
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
            SessionView(
                s.id, State(s.state), s.flow_run_id, s.updated_at, s.expires_at, True, device_id=s.device_id
            )
            for s in rows
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
            for x in lease_repo.list_open_leases(db)
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


PARTS: list[tuple[float, float, float]] = []  # per pass: engines (in the background), observe, plan


class TimedInventory:
    """The pass's runtime, timing its inventory() (the host rows, every engine's list calls and
    the host updates), which observe() runs in the background while it reads the database."""

    def __init__(self, runtime: HostsRuntime) -> None:
        self.runtime = runtime
        self.last_s = 0.0

    def inventory(self):
        started = time.perf_counter()
        try:
            return self.runtime.inventory()
        finally:
            self.last_s = time.perf_counter() - started


def ours_hosts(sessions: sessionmaker[Session], runtime: TimedInventory) -> int:
    """One pass over every host as the reconcile flow makes it: observe(), then the pure plan."""
    t0 = time.perf_counter()
    with sessions() as db:
        observed = observe(db, runtime, no_flow_runs)
    t1 = time.perf_counter()
    actions = len(plan(observed, POLICY))
    PARTS.append((runtime.last_s, t1 - t0, time.perf_counter() - t1))
    return actions


def create_containers(
    clients: list[docker.DockerClient], instance_id: str, live_ids: list[str], *, by_tag: bool = False
) -> int:
    """Two containers per live session, round robin over the engines, made as ContainerRuntime
    makes them: by the image's id on that engine, the tag in a label (``by_tag``: as it did
    before, by the tag)."""
    refs = [
        IMAGE
        if by_tag
        else ContainerRuntime(
            c, instance_id=instance_id, network="none", stream_image=IMAGE, profiles={}
        ).image_id(IMAGE)
        for c in clients
    ]

    def one(args: tuple[int, str, Role]) -> None:
        i, sid, role = args
        clients[i % len(clients)].api.create_container(
            refs[i % len(clients)],
            entrypoint=["sleep", "infinity"],
            name=container_name(instance_id, sid, role),
            labels={**ownership_labels(instance_id, sid, role), LABEL_IMAGE: IMAGE},
            host_config=clients[0].api.create_host_config(network_mode="none"),
        )

    work = [(i, sid, role) for i, sid in enumerate(live_ids) for role in (Role.DEVICE, Role.STREAM)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, work))
    return len(work)


def main_hosts(args: argparse.Namespace) -> int:
    from tests.plugins.docker_hosts import clear_engine, load_images, start_engine, stop_engine, take_slot

    client = docker.from_env()
    client.images.get(IMAGE)
    instance_id = "bench-" + secrets.token_hex(3)
    database = contextlib.ExitStack()
    engine = None
    extra, slots = [], []
    try:
        for _ in range(args.hosts - 1):
            slot, handle = take_slot()
            slots.append(handle)
            extra.append(start_engine(slot))
            clear_engine(extra[-1])
            load_images(client, extra[-1])
        urls = [os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")]
        urls += [e.url for e in extra]
        clients = [client] + [e.client for e in extra]
        print(f"{args.hosts} engines: {', '.join(urls)}", flush=True)
        url = database.enter_context(postgres())
        engine = make_engine(url)
        sessions = sessionmaker(engine, expire_on_commit=False)
        names = [f"host{i}" for i in range(len(urls))]
        with sessions.begin() as db:
            for i, docker_url in enumerate(urls):
                hostrepo.add_host(
                    db,
                    name=f"host{i}",
                    docker_url=docker_url,
                    stream_address="127.0.0.1",
                    cpus=64,
                    memory_mb=65536,
                )
        live_ids = seed_database(sessions, args.sessions, args.live, hosts=names)
        started = time.perf_counter()
        made = create_containers(clients, instance_id, live_ids, by_tag=args.by_tag)
        how = "by image tag (as before)" if args.by_tag else "by image id (as the runtime makes them)"
        print(
            f"created {made} containers {how} over {args.hosts} engines in {time.perf_counter() - started:.1f} s"
        )
        runtimes = HostEngines(
            instance_id=instance_id, network="none", stream_image=IMAGE, profiles={}, egress_guard=False
        )
        runtime = TimedInventory(HostsRuntime(sessions, runtimes, grace_s=60))
        counter = Counter(engine, client.api)
        docker_calls = {"n": 0}
        for docker_url in urls:  # count every engine's requests
            api = runtimes.client(docker_url).api
            send = api.send

            def counting_send(request, _send=send, **kwargs):
                docker_calls["n"] += 1
                return _send(request, **kwargs)

            api.send = counting_send
        ours_hosts(sessions, runtime)  # warm-up
        load = os.getloadavg()[0]
        times = []
        for _ in range(args.repeat):
            counter.reset()
            docker_calls["n"] = 0
            t0 = time.perf_counter()
            actions = ours_hosts(sessions, runtime)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        print(
            f"\none pass over {args.hosts} hosts ({args.sessions} rows, {args.live} live, {made} containers "
            f"{'by tag' if args.by_tag else 'by id'}): median {median * 1000:.1f} ms "
            f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}), {counter.sql} SQL statements, "
            f"{docker_calls['n']} Docker calls ({docker_calls['n'] / args.hosts:g} per host: one container "
            f"list, one network list), {actions} actions planned; load average {load:.1f} -> "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        parts = PARTS[-args.repeat :]
        engines_s, observe_s, plan_s = (statistics.median(p[i] for p in parts) * 1000 for i in range(3))
        print(
            f"  engines (host rows, list calls, host updates; in the background): {engines_s:.1f} ms, "
            f"observe (database reads meanwhile, then waits for the engines): {observe_s:.1f} ms, "
            f"plan: {plan_s:.1f} ms"
        )
        runtimes.close()
        assert docker_calls["n"] == 2 * args.hosts, "one container and one network list call per host engine"
    finally:
        for c in [client] + [e.client for e in extra]:
            remove_containers(c, instance_id)
        for e in extra:
            stop_engine(e)
        for handle in slots:
            handle.close()
        if engine is not None:
            engine.dispose()
        database.close()
        client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000, help="session rows (default 10000)")
    parser.add_argument(
        "--live", type=int, default=100, help="live sessions, 2 containers each (default 100)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per method (default 5)")
    parser.add_argument("--hosts", type=int, default=1, help="Docker engines (>1: extra dockerd; as root)")
    parser.add_argument(
        "--by-tag",
        action="store_true",
        help="with --hosts: create the containers by image tag, as the runtime did before (slower lists)",
    )
    args = parser.parse_args(argv)
    if args.hosts > 1:
        if not 0 < args.live <= args.sessions:
            parser.error("--live must be between 1 and --sessions")
        return main_hosts(args)
    if not 0 < args.live <= min(args.sessions, 500):
        parser.error("--live must be between 1 and min(--sessions, 500)")

    client = docker.from_env()
    client.ping()
    client.images.get(IMAGE)  # fails early with ImageNotFound: run scripts/build-images
    instance_id = "bench-" + secrets.token_hex(3)
    database = contextlib.ExitStack()
    engine = None
    try:
        print("starting a throwaway PostgreSQL ...", flush=True)
        url = database.enter_context(postgres())
        engine = make_engine(url)
        sessions = sessionmaker(engine, expire_on_commit=False)
        started = time.perf_counter()
        live_ids = seed_database(sessions, args.sessions, args.live, hosts=["local"])
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
            client,
            instance_id=instance_id,
            network="none",
            stream_image=IMAGE,
            profiles={},
            egress_guard=False,
        )
        counter = Counter(engine, client.api)
        results = [
            measure(
                "ours: 4 queries + 1 container + 1 network list",
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
        database.close()
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
