"""GET /openapi.json describes the API the app declares, from its routes and the request model;
a browser without a link or token is told how to get in, in words, not raw JSON."""

from __future__ import annotations

from starlette.routing import Route

from provisioner.gateway.app import create_app
from provisioner.gateway.openapi import OPENAPI_PATH
from tests.harness.gateway import TOKEN

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_the_document_lists_every_api_route_and_the_request_model(gateway_factory) -> None:
    gw = gateway_factory(token=TOKEN)
    assert gw.client.get(OPENAPI_PATH).status_code == 401
    reply = gw.client.get(OPENAPI_PATH, headers=BEARER)
    assert reply.status_code == 200
    doc = reply.json()
    assert doc["openapi"].startswith("3.1")
    declared = {
        (r.path, m.lower())
        for r in create_app(gw.deps).routes  # the routes this app declares (not started)
        if isinstance(r, Route) and not r.path.startswith(("/vnc/", "/webhooks/"))
        for m in r.methods
        if m != "HEAD"
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == declared
    create = doc["paths"]["/sessions"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    model = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"service", "country", "providers", "max_price"} <= set(model["properties"])
    assert doc["paths"]["/sessions/{session_id}"]["get"]["parameters"][0]["name"] == "session_id"


def test_a_browser_without_a_link_gets_a_page_that_says_how_to_get_in(gateway_factory) -> None:
    gw = gateway_factory(token=TOKEN)
    reply = gw.client.get("/s/abcdefghijkm", headers={"Accept": "text/html"})
    assert reply.status_code == 401
    assert reply.headers["content-type"].startswith("text/html")
    assert "signed link" in reply.text
    assert gw.client.get("/s/abcdefghijkm").json()["reason"] == "unauthorized"  # API clients: JSON
