"""The simulator's control surface: HTTP control endpoints, reset, ledger, and the command."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from providers.base import CodeReceived
from providers.errors import UnavailableError
from tests.providers.specs import KEY, SPECS


@pytest.fixture
def control(sim):
    with httpx.Client(base_url=f"http://{sim.host}:{sim.port}/_sim/", timeout=2) as http:
        yield http


class TestControlEndpoints:
    def test_deliver_and_ledger(self, sim, make_provider, control):
        provider = make_provider("sms_activate")
        lease = provider.acquire("tg", "0", None)
        reply = control.post("deliver", json={"activation_id": lease.activation_id, "code": "9090"})
        assert reply.json() == {"ok": True}
        assert provider.check(lease) == CodeReceived("9090", "9090")
        provider.finish(lease)
        ledger = control.get("ledger").json()
        assert ledger["open"] == [] and ledger["settled"] is True
        assert [e["kind"] for e in ledger["entries"]] == ["purchase", "finish"]

    def test_inject_and_reset(self, sim, make_provider, control):
        provider = make_provider("onlinesim")
        assert control.post("inject", json={"kind": "no_numbers", "protocol": "onlinesim"}).status_code == 200
        with pytest.raises(UnavailableError, match="WARNING_NO_NUMS"):
            provider.balance()
        control.post("inject", json={"kind": "http", "status": 502})
        control.post("reset")
        assert provider.balance() == Decimal("100") and sim.calls[-1][1] == "getBalance"

    def test_sms_delay_advance_configure(self, sim, make_provider, control):
        control.post("sms-delay", json={"seconds": 10})
        control.post("configure", json={"lifetime_s": 60})
        provider = make_provider("sms_man")
        lease = provider.acquire("3", "1", None)
        control.post("advance", json={"seconds": 11})
        assert isinstance(provider.check(lease), CodeReceived)
        control.post("advance", json={"seconds": 60})
        assert sim.ledger().settled and len(sim.ledger().finishes) == 1  # auto-completed at expiry

    def test_dialect_per_key_until_reset(self, sim, control):
        url = sim.base_urls["sms_activate"]
        assert control.post("dialect", json={"key": KEY, "dialect": "status-codes"}).json() == {"ok": True}
        assert httpx.get(url, params={"api_key": KEY, "action": "getStatus", "id": "9"}).status_code == 404
        assert control.post("dialect", json={"key": KEY, "dialect": "pidgin"}).status_code == 400
        control.post("reset")
        reply = httpx.get(url, params={"api_key": KEY, "action": "getStatus", "id": "9"})
        assert (reply.status_code, reply.text) == (200, "NO_ACTIVATION")

    def test_bad_requests(self, control):
        assert control.post("deliver", json={"activation_id": "nope", "code": "1"}).status_code == 400
        assert control.post("inject", json={"kind": "meteor"}).status_code == 400
        assert control.post("nothing").status_code == 404


class TestPythonApi:
    def test_reset_restores_balances_offers_and_clock(self, sim, make_provider):
        provider = make_provider("sms_man")
        sim.set_offer("3", "1", "99", 1)
        provider.acquire("3", "1", None)
        sim.advance(5000)
        sim.reset()
        assert sim.purchases == 0 and sim.balance(KEY) == Decimal("100") and sim.state.offset == 0
        assert provider.price("3", "1").price == Decimal("10.00")

    def test_keys_are_shared_by_all_protocols(self, sim, make_provider):
        for name in sim.base_urls:
            make_provider(name).acquire(SPECS[name].service, SPECS[name].country, None)
        assert sim.balance(KEY) == Decimal("70") and len(sim.ledger().open) == 3


def test_runs_as_a_command():
    command = [
        sys.executable,
        "-m",
        "provisioner.simulator.server",
        "--port",
        "0",
        "--key",
        "demo-key",
        "--sms-delay",
        "3",
        "--dialect",
        "status-codes",
    ]
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=root)
    try:
        line = process.stdout.readline().split()
        assert line[0] == "sms_man"
        url = line[1].replace("/sms-man/control/", "/stubs/handler_api.php")
        reply = httpx.get(url, params={"api_key": "demo-key", "action": "getBalance"}, timeout=2)
        assert reply.text == "ACCESS_BALANCE:100.00"
        reply = httpx.get(url, params={"api_key": "not-a-key", "action": "getBalance"}, timeout=2)
        assert (reply.status_code, reply.text) == (401, "BAD_KEY")
    finally:
        process.terminate()
        process.wait(timeout=5)
