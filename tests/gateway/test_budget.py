"""A client's daily budget through the real gateway: concurrent POSTs, provision flow runs under
Prefect's harness (a worker of 4 slots runs them), the simulator's ledger as the truth."""

from __future__ import annotations

import concurrent.futures
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from flows.provision import provision_session
from provisioner.cli.main import app as cli
from provisioner.prefect_api.names import PROVISION_EXECUTOR_DEPLOYMENT
from provisioner.steps.request import ProvisionRequest
from provisioner.store import OPEN_LEASE_OUTCOMES, State
from provisioner.store import leases as lease_repo
from provisioner.store import repository as repo
from tests.harness.gateway import RecordingRuns

pytestmark = pytest.mark.docker
SLOTS = 4  # flow runs at once, as a work pool's concurrency limit would allow


@dataclass
class WorkerRuns(RecordingRuns):
    """The gateway's FlowRuns with a worker behind it: each provision run it creates is run as a
    real flow run (Prefect's test harness) on one of SLOTS threads."""

    pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(SLOTS)
    )
    runs: list[concurrent.futures.Future] = field(default_factory=list)

    async def start(self, deployment: str, parameters: dict[str, Any], *, idempotency_key: str | None):
        run = await super().start(deployment, parameters, idempotency_key=idempotency_key)
        if deployment == PROVISION_EXECUTOR_DEPLOYMENT:
            request = ProvisionRequest(**parameters["request"])
            self.runs.append(
                self.pool.submit(
                    provision_session, request=request, session_id=parameters["session_id"], return_state=True
                )
            )
        return run


def test_twenty_concurrent_posts_buy_at_most_what_the_budget_allows(
    provisioner_env, sim, gateway_factory, monkeypatch
):
    deps = provisioner_env
    monkeypatch.setattr(deps.settings.spend, "max_price", "0.50 USD")
    added = CliRunner().invoke(
        cli,
        [
            "clients",
            "add",
            "acme",
            "--budget",
            "1.00 USD/day",
            "--max-sessions",
            "50",
            "--rate",
            "100/min",
            "--json",
        ],
    )
    assert added.exit_code == 0, added.output
    headers = {"Authorization": f"Bearer {json.loads(added.output)['token']}"}
    sim.set_offer("3", "1", "0.30", 100, protocol="sms_man")
    sim.set_sms_delay(0.3)
    runs = WorkerRuns()
    gw = gateway_factory(token="operator-token-7d1e", runs=runs, spend={"max_price": "0.50 USD"})
    body = {"providers": ["sms_man"], "max_price": "0.30 USD"}

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{gw.url}/sessions", json=body, headers=headers, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(20) as posters:
        replies = list(posters.map(post, range(20)))
    assert {r.status_code for r in replies} <= {202, 402}
    accepted = [r.json()["session_id"] for r in replies if r.status_code == 202]
    for run in concurrent.futures.as_completed(runs.runs, timeout=600):
        run.result()
    runs.pool.shutdown()

    ledger = sim.ledger()
    assert len(ledger.purchases) == 3 and sum(e.amount for e in ledger.purchases) == Decimal("0.90")
    with deps.sessions() as db:
        rows = [repo.get_session(db, sid) for sid in accepted]
        open_leases = [x for x in lease_repo.list_open_leases(db) if x.outcome in OPEN_LEASE_OUTCOMES]
    states = sorted(r.state for r in rows)
    assert states.count(State.VERIFIED) == 3, [(r.state, r.last_error) for r in rows]
    refused = [r for r in rows if r.state != State.VERIFIED]
    assert all(r.state == State.FAILED and r.last_error.startswith("budget exhausted") for r in refused)
    assert len(refused) + sum(r.status_code == 402 for r in replies) == 17
    assert ledger.open == [] and open_leases == []  # nothing bought for them, nothing left open

    again = gw.client.post("/sessions", json=body, headers=headers)
    assert again.status_code == 402
    reply = again.json()
    assert reply["reason"] == "budget exhausted" and reply["budget"] == "acme"
    assert (reply["limit"], reply["spent"], reply["remaining"]) == (
        "1.00 USD/day",
        "0.9000 USD",
        "0.1000 USD",
    )
    assert reply["resets_at"].endswith("+00:00") and "T00:00:00" in reply["resets_at"]
    assert len(runs.started) == len(accepted)  # the 402 started nothing
