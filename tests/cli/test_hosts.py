"""`provisioner hosts`: add, list, drain, as an operator types them (real database)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from provisioner.cli.main import app

runner = CliRunner()


TLS = ["--tls-ca", "/etc/prov/ca.pem", "--tls-cert", "/etc/prov/cert.pem", "--tls-key", "/etc/prov/key.pem"]


def test_add_list_and_drain_a_host(db):
    added = runner.invoke(
        app,
        ["hosts", "add", "gpu-1", "--docker-url", "tcp://10.0.0.5:2376", "--stream-address", "10.0.0.5"]
        + ["--cpus", "16", "--memory", "24g", *TLS],
    )
    assert added.exit_code == 0, added.output
    assert "gpu-1: active, 16 cpus, 24576 MB" in added.output
    drained = runner.invoke(app, ["hosts", "drain", "gpu-1"])
    assert drained.exit_code == 0, drained.output
    listed = runner.invoke(app, ["hosts", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert (row["name"], row["state"], row["memory_mb"], row["stream_address"]) == (
        "gpu-1",
        "draining",
        24576,
        "10.0.0.5",
    )
    assert row["tls_ca"] == "/etc/prov/ca.pem" and row["insecure_plain_tcp"] is False


class TestRemoteEnginesNeedTLSOrSSH:
    """Nothing here connects anywhere: the URL is refused (or recorded) before any engine call."""

    common = ["--stream-address", "10.0.0.5", "--cpus", "2", "--memory", "2g"]

    def test_plain_tcp_off_this_machine_is_refused_naming_the_options(self, db):
        refused = runner.invoke(
            app, ["hosts", "add", "b", "--docker-url", "tcp://10.0.0.5:2376", *self.common]
        )
        assert refused.exit_code == 2
        said = " ".join(refused.output.split())
        for option in ("--tls-ca", "--tls-cert", "--tls-key", "ssh://", "--insecure-plain-tcp"):
            assert option in said
        assert json.loads(runner.invoke(app, ["hosts", "--json"]).output) == []

    def test_half_a_tls_setup_is_refused(self, db):
        refused = runner.invoke(
            app,
            ["hosts", "add", "b", "--docker-url", "tcp://10.0.0.5:2376", *self.common, *TLS[:4]],
        )
        assert refused.exit_code == 2
        assert "missing key" in " ".join(refused.output.split())

    def test_labs_may_insist_on_plain_tcp(self, db):
        added = runner.invoke(
            app,
            [
                "hosts",
                "add",
                "lab",
                "--docker-url",
                "tcp://10.0.0.5:2375",
                *self.common,
                "--insecure-plain-tcp",
            ],
        )
        assert added.exit_code == 0, added.output
        [row] = json.loads(runner.invoke(app, ["hosts", "--json"]).output)
        assert row["insecure_plain_tcp"] is True

    def test_loopback_tcp_needs_nothing(self, db):
        added = runner.invoke(
            app, ["hosts", "add", "here", "--docker-url", "tcp://127.0.0.1:2375", *self.common]
        )
        assert added.exit_code == 0, added.output


def test_bad_name_memory_or_unknown_host_get_a_clear_error(db):
    common = ["--docker-url", "unix:///x.sock", "--stream-address", "127.0.0.1", "--cpus", "2"]
    bad_name = runner.invoke(app, ["hosts", "add", "Big_Host", *common, "--memory", "2g"])
    assert bad_name.exit_code == 2
    assert "work queue host-<name>" in bad_name.output
    bad_memory = runner.invoke(app, ["hosts", "add", "h1", *common, "--memory", "lots"])
    assert bad_memory.exit_code == 2
    assert "not a memory size" in bad_memory.output
    unknown = runner.invoke(app, ["hosts", "drain", "nope"])
    assert unknown.exit_code == 2
    assert "no host 'nope'" in unknown.output
    assert json.loads(runner.invoke(app, ["hosts", "--json"]).output) == []
