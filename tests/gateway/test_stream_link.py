"""The link a Prefect UI user finds in the session's artifact is the gateway's session page, and the
page and its stream still work after the stream container was killed and reconciliation healed it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from websockets.sync.client import connect as ws_connect

from flows.provision import ProvisionResult, provision_session
from flows.reconcile import reconcile_sessions
from flows.release import release_session
from provisioner.steps.request import ProvisionRequest
from tasks.publish import session_artifact_key

pytestmark = pytest.mark.docker


def artifact_link(session_id: str) -> str:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[session_artifact_key(session_id)]))
        )
    links = re.findall(r"\[open\]\(([^)]+)\)", str(artifact.data))
    assert len(links) == 1
    return links[0]


def test_artifact_stream_link_survives_a_killed_and_healed_stream(
    provisioner_env, sim, runtime, gateway_factory
):
    sim.set_sms_delay(0.3)
    result = provision_session(request=ProvisionRequest(providers=["sms_activate"]))
    assert isinstance(result, ProvisionResult)
    sid = result.session_id
    link = urlsplit(artifact_link(sid))
    assert link.path == f"/s/{sid}"
    gw = gateway_factory()  # the gateway of this deployment, on the test's runtime and database
    assert gw.client.get(f"{link.path}?{link.query}").status_code == 200
    page = f"/vnc/{sid}/vnc.html"  # the screen the session page embeds
    assert gw.client.get(page).status_code == 200

    (stream,) = [c for c in runtime.list_managed() if c.role == "stream"]
    runtime.remove(stream.name)
    assert gw.client.get(page, headers={"Accept": "text/html"}).status_code == 503
    summary = reconcile_sessions()
    assert [row["action"] for row in summary.actions] == ["heal_stream"]

    assert artifact_link(sid) == link.geturl(), "the link did not change"
    assert gw.client.get(page).status_code == 200
    with ws_connect(f"{gw.ws_url}/vnc/{sid}/websockify", subprotocols=["binary"], open_timeout=5) as ws:
        assert ws.recv(timeout=5)[:4] == b"RFB "
    release_session(session_id=sid)
