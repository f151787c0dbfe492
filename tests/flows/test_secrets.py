"""Provider keys never reach logs, flow states, artifacts or the database, even when calls fail."""

from __future__ import annotations

import logging

import pytest
from prefect.client.orchestration import get_client
from sqlalchemy import text

from flows.provision import provision_session
from provisioner.settings import get_settings
from provisioner.steps.deps import reset_deps
from provisioner.steps.request import ProvisionRequest
from tests.plugins.simulator import SIM_KEY

pytestmark = pytest.mark.docker

WRONG_KEY = "wrong-key-f00dcafe"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_keys_never_leak(provisioner_env, sim, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    prefect_logs = _Collect()  # Prefect's loggers do not propagate to caplog
    logging.getLogger("prefect").addHandler(prefect_logs)
    sim.set_sms_delay(0.2)
    sim.inject("http", status=500, protocol="sms_man", times=None)  # a failing call on the way
    ok = provision_session(request=ProvisionRequest(providers=["sms_man", "sms_activate"]), return_state=True)
    assert ok.is_completed(), ok.message  # sms_man kept failing: the next provider served

    monkeypatch.setenv("PROVISIONER_PROVIDERS__SMS_ACTIVATE__API_KEY", WRONG_KEY)
    get_settings.cache_clear()
    reset_deps()
    bad = provision_session(request=ProvisionRequest(providers=["sms_activate"]), return_state=True)
    assert bad.is_failed()

    logging.getLogger("prefect").removeHandler(prefect_logs)
    texts = [record.getMessage() for record in caplog.records] + prefect_logs.lines
    texts += [ok.message or "", bad.message or "", repr(bad.result(raise_on_failure=False))]
    with provisioner_env.sessions() as db:
        for table in ("sessions", "number_leases", "session_events"):
            texts += [str(row) for row in db.execute(text(f"SELECT * FROM {table}"))]
    with get_client(sync_client=True) as client:
        texts += [str(a.data) + str(a.description) for a in client.read_artifacts()]
    blob = "\n".join(texts)
    assert "rented a number" in blob  # the capture did see the runs
    assert SIM_KEY not in blob
    assert WRONG_KEY not in blob
