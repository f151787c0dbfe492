"""What a Prefect UI user meets: the provision form's schema, runs named and tagged after their
session, and one session artifact updated in place whose stream link goes through the gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterTags

from flows.provision import ProvisionResult, provision_session
from flows.release import release_session
from provisioner.steps.request import ProvisionRequest
from tasks.publish import session_artifact_key

ROOT = Path(__file__).resolve().parents[2]


SCHEMA_AS_DEPLOY_MAKES_IT = """
import json
from prefect.utilities.callables import parameter_schema
from flows.provision import provision_session
print(json.dumps(parameter_schema(provision_session).model_dump()))
"""


def test_form_has_real_defaults_choices_and_no_none_alternatives(tmp_path):
    """The schema as `prefect deploy` makes it, in a process with the deployer's settings only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    env["PROVISIONER_PROVIDERS__ORDER"] = '["sms_activate", "sms_man", "onlinesim"]'
    env["PROVISIONER_DEFAULTS__TTL_S"] = "1800"
    made = subprocess.run(
        [sys.executable, "-c", SCHEMA_AS_DEPLOY_MAKES_IT],
        cwd=tmp_path,  # no .env: the database URL is not needed to make the form
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    schema = json.loads(made.stdout)
    form = schema["definitions"]["ProvisionRequest"]["properties"]
    assert "null" not in str(form)
    assert {name: prop.get("default") for name, prop in form.items()} == {
        "service": "telegram",
        "country": "RU",
        "providers": ["sms_activate", "sms_man", "onlinesim"],
        "max_price": None,
        "device_profile": "stub",
        "code_timeout_s": 300.0,
        "number_attempts": 3,
        "ttl_s": 1800.0,
        "idle_timeout_s": 1800.0,
    }
    assert form["providers"]["items"]["enum"] == ["sms_activate", "sms_man", "onlinesim"]
    assert form["device_profile"]["enum"][0] == "stub"
    assert "android" in form["device_profile"]["enum"]
    assert form["ttl_s"]["title"] == "Session lifetime (seconds)"
    assert form["code_timeout_s"]["title"] == "Code timeout (seconds)"
    assert all(prop.get("description") for prop in form.values())
    by_position = sorted(form, key=lambda name: form[name]["position"])
    assert by_position == list(ProvisionRequest.model_fields)  # the UI's order, whatever the key order
    request_default = schema["properties"]["request"]["default"]
    assert request_default["ttl_s"] == 1800.0
    assert None not in request_default.values()
    session_id = schema["properties"]["session_id"]
    assert session_id["title"].startswith("Advanced")
    assert "leave empty" in session_id["description"]
    assert session_id["position"] > schema["properties"]["request"]["position"]


@pytest.mark.docker
def test_runs_are_named_and_tagged_after_the_session_with_one_artifact_updated_in_place(provisioner_env, sim):
    deps = provisioner_env
    sim.set_sms_delay(0.3)
    state = provision_session(request=ProvisionRequest(providers=["sms_activate"]), return_state=True)
    result = state.result()
    assert isinstance(result, ProvisionResult)
    sid = result.session_id
    verified = _session_artifact_text(sid)
    assert "**verified**" in verified and "| Code | received |" in verified
    assert f"| Session page | [open]({deps.settings.gateway.public_url}/s/{sid}" in verified
    release_session(session_id=sid)

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"session:{sid}"]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[session_artifact_key(sid)]))
        )
        others = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"stream-{sid}"]))
        )
    assert sorted(r.name for r in runs) == [f"provision-{sid}", f"release-{sid}"]
    assert [a.type for a in artifacts] == ["markdown"], "one artifact per session"
    assert others == []
    text = str(artifacts[0].data)
    assert "**released**" in text, "the release updated the provision's artifact"
    assert "| Session page | - |" in text, "no link to a released session"


def _session_artifact_text(sid: str) -> str:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[session_artifact_key(sid)]))
        )
    return str(artifact.data)
