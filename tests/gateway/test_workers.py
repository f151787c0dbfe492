"""The gateway as several processes (PROVISIONER_GATEWAY__WORKERS) behind one port, as deployed
(`python -m provisioner.gateway`): every worker relays streams, and a worker killed with SIGKILL
is replaced while the others go on serving."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from provisioner.runtime.probes import read_banner_over_websocket
from provisioner.store import State
from tests.harness.gateway import gateway_process
from tests.harness.services import free_port
from tests.plugins.prefect_env import provisioner_environment


def _workers(parent: int) -> set[int]:
    """The gateway's worker processes: children of ``parent`` started by multiprocessing's spawn."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmdline:
            found.add(int(stat.parent.name))
    return found


def _wait_for_workers(
    parent: int, count: int, *, besides: set[int] = frozenset(), timeout_s: float = 30
) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = _workers(parent)
        if len(found) == count and not found & besides:
            return found
        assert time.monotonic() < deadline, f"workers of {parent}: {sorted(found)}, wanted {count} new"
        time.sleep(0.2)


def test_two_workers_relay_streams_and_a_killed_worker_is_replaced(
    make_session, launched, runtime, database_url
):
    sid = make_session(State.AWAITING_CODE, session_id=launched.session_id)
    port = free_port()
    env = {
        **os.environ,
        **provisioner_environment(instance_id=runtime.instance_id, sim_urls={}, database_url=database_url),
        "PROVISIONER_GATEWAY__PORT": str(port),
        "PROVISIONER_GATEWAY__WORKERS": "2",
    }
    env.pop("PROVISIONER_GATEWAY__TOKEN", None)
    pids: list[int] = []
    with gateway_process(env, port, pids=pids) as base:
        workers = _wait_for_workers(pids[0], 2)
        url = f"{base.replace('http://', 'ws://')}/vnc/{sid}/websockify"
        # The kernel hands each connection to one of the workers; every one relays the device.
        for _ in range(6):
            assert read_banner_over_websocket(url, timeout_s=10).startswith("RFB 003.")

        os.kill(min(workers), signal.SIGKILL)
        replaced = _wait_for_workers(pids[0], 2, besides={min(workers)})
        assert max(workers) in replaced  # the other one served on
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/healthz", timeout=5, trust_env=False).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for _ in range(6):
            assert read_banner_over_websocket(url, timeout_s=10).startswith("RFB 003.")
