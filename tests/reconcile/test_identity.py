"""One identity per deployment: recorded by migrate, enforced at process start, and a second
deployment on the same engine and PostgreSQL server keeps its containers through our passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

import pytest

from flows.reconcile import reconcile_sessions
from provisioner.runtime.isolation import pair_network_name
from provisioner.runtime.model import Role
from provisioner.store import new_session_id
from provisioner.store.identity import INSTANCE_ID_PATTERN, IdentityMismatch
from provisioner.store.migrate import upgrade
from tests.plugins.docker_engine import _test_instances
from tests.plugins.postgres import create_database, drop_database

pytestmark = pytest.mark.docker


@pytest.fixture
def other_database(postgres_server):
    """A second deployment's database on the same server, migrated (its identity generated)."""
    name = f"provisioner_other_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server, name)
    try:
        yield url, upgrade(url)
    finally:
        drop_database(postgres_server, name)


class TestMigrateRecordsTheIdentity:
    def test_generated_once_then_kept(self, other_database) -> None:
        url, first = other_database
        assert first and re.match(INSTANCE_ID_PATTERN, first) and first != "local"
        assert upgrade(url) == first  # a later migrate keeps it
        assert upgrade(url, instance_id=first) == first
        with pytest.raises(IdentityMismatch, match=f"belongs to deployment '{first}'"):
            upgrade(url, instance_id="someone-else")

    def test_named_on_first_migrate(self, postgres_server) -> None:
        name = f"provisioner_named_{uuid.uuid4().hex[:8]}"
        url = create_database(postgres_server, name)
        try:
            assert upgrade(url, instance_id="blue") == "blue"
            assert upgrade(url) == "blue"
        finally:
            drop_database(postgres_server, name)


class TestProcessStart:
    @pytest.mark.parametrize(
        "command",
        [["-m", "provisioner.gateway"], ["-m", "provisioner.cli", "watch", "--provider", "sms_activate"]],
        ids=["gateway", "watcher"],
    )
    def test_a_mismatched_instance_id_refuses_to_start(self, other_database, command) -> None:
        url, recorded = other_database
        env = {
            **os.environ,
            "PROVISIONER_DATABASE__URL": url,
            "PROVISIONER_INSTANCE_ID": "not-" + recorded[:20],
            "PROVISIONER_PROVIDERS__SMS_ACTIVATE__API_KEY": "k",
        }
        done = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert f"belongs to deployment '{recorded}'" in " ".join(done.stderr.split())
        assert "Traceback" not in done.stderr


class TestTwoDeploymentsOneEngine:
    def test_the_other_deployments_containers_survive_our_passes(
        self, provisioner_env, runtime, runtime_factory, other_database
    ) -> None:
        deps = provisioner_env
        _, other_id = other_database
        assert deps.settings.instance_id == runtime.instance_id != other_id
        _test_instances.append(other_id)  # removed after the session like any test instance
        theirs = runtime_factory(instance_id=other_id)
        their_device = new_session_id()
        theirs.launch_device(their_device, "stub")
        ours = new_session_id()
        runtime.launch_device(ours, "stub")  # a stray of ours, for contrast
        time.sleep(deps.settings.reconcile.grace_s + 1.1)  # created-at has whole seconds

        first = reconcile_sessions()
        assert [(a["action"], a["target"]) for a in first.actions] == [
            ("remove_container", runtime.name_for(ours, Role.DEVICE))
        ]
        for _ in range(2):
            assert reconcile_sessions().actions == []
        assert {c.device_id for c in theirs.list_managed()} == {their_device}
        assert pair_network_name(other_id, their_device) in {n.name for n in theirs.inventory().networks}
        theirs.remove_device(their_device)
