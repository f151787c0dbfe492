"""GET /openapi.json: the gateway's API as an OpenAPI 3.1 document, built from the routes the app
declares and the request model (ProvisionRequest), so it cannot drift from the code. It needs a
token like every other route but the health checks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from provisioner.settings.version import VERSION
from provisioner.steps.request import ProvisionRequest

OPENAPI_PATH = "/openapi.json"
_REQUEST_BODIES = {("/sessions", "post"): "ProvisionRequest"}
_NOT_HTTP_API = ("/vnc/", "/webhooks/")  # the stream proxy and provider callbacks


def _summary(route: Route) -> str:
    doc = (route.endpoint.__doc__ or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else route.name.replace("_", " ")


def _operation(route: Route, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": _summary(route),
        "operationId": f"{method}_{route.name}",
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.param_convertors
        ],
        "responses": {"default": {"description": "JSON; errors carry `reason` and `detail`"}},
    }
    if model := _REQUEST_BODIES.get((route.path, method)):
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
        }
    return operation


def build_openapi(routes: list[BaseRoute]) -> dict[str, Any]:
    """The document for these routes (HTTP routes only; the stream proxy and webhooks are left out)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or route.path.startswith(_NOT_HTTP_API):
            continue
        for method in sorted(m.lower() for m in route.methods or ("GET",) if m != "HEAD"):
            paths.setdefault(route.path, {})[method] = _operation(route, method)
    schema = ProvisionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = {
        "ProvisionRequest": {k: v for k, v in schema.items() if k != "$defs"},
        **schema.get("$defs", {}),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "provisioner gateway", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


async def openapi(request: Request) -> Response:
    """The gateway's API as an OpenAPI 3.1 document."""
    return JSONResponse(build_openapi(request.app.routes))


routes = [Route(OPENAPI_PATH, openapi, methods=["GET"])]
