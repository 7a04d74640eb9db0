"""`/openapi.json` and `/docs`: an HTTP part's OpenAPI 3.1 document and a Swagger UI page.

Each part keeps its document beside its code (`gateway/openapi.yaml`,
`notifier/openapi.yaml`); the routes every part has are added here. A test holds the
documents to the routes. The page's assets come from the swagger-ui-py package, served by
the part itself: nothing is loaded from the internet.
"""

import functools
import importlib.resources
import importlib.util
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from runtime.http import json_response
from schemas.storable import DOCUMENTED

# swagger-ui-py's assets, found without importing the package (it imports jinja2 for
# templates we do not use: 0.1 s at every part start).
_SWAGGER_UI = importlib.util.find_spec("swagger_ui")
assert _SWAGGER_UI is not None and _SWAGGER_UI.origin, "swagger-ui-py is a dependency"
ASSETS = Path(_SWAGGER_UI.origin).parent / "static"
_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_ALIVE = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        }
    }
}
_READY = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"enum": ["ready", "not_ready"]},
                "detail": {"type": "string", "description": "why not ready"},
            },
        }
    }
}
OPS_PATHS: dict[str, Any] = {
    "/healthz": {"get": {"summary": "Alive", "tags": ["operations"], "security": [{}],
                         "responses": {"200": {"description": "alive", "content": _ALIVE}}}},
    "/readyz": {"get": {"summary": "Connected and caught up", "tags": ["operations"],
                        "security": [{}],
                        "responses": {"200": {"description": "ready", "content": _READY},
                                      "503": {"description": "not ready", "content": _READY}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["operations"],
                         "security": [{}],
                         "responses": {"200": {"description": "exposition format",
                                               "content": _TEXT}}}},
    "/openapi.json": {"get": {"summary": "This document", "tags": ["operations"],
                              "security": [{}],
                              "responses": {"200": {"description": "OpenAPI 3.1",
                                                    "content": {"application/json": {}}}}}},
    "/docs": {"get": {"summary": "This document, to read and try", "tags": ["operations"],
                      "security": [{}],
                      "responses": {"200": {"description": "Swagger UI",
                                            "content": {"text/html": {}}}}}},
}  # fmt: skip

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/openapi.json", dom_id: "#ui", deepLinking: true}});</script>
</body></html>
"""


@functools.cache
def document(package: str) -> dict[str, Any]:
    """The package's OpenAPI document, with the components answers of every part share
    (schemas/api.yaml), each `x-rule` spelled out as the bounds of its rule, and the routes
    every part has: read once a process (callers do not change it), with libyaml's parser
    where PyYAML has it (the gateway's document takes 25 ms there against 155 ms in pure
    Python, at every part start)."""
    spec = _read(package, "openapi.yaml")
    shared = _read("schemas", "api.yaml")["components"]["schemas"]
    own = spec.setdefault("components", {}).setdefault("schemas", {})
    assert not shared.keys() & own.keys(), f"{package} declares again {shared.keys() & own.keys()}"
    spec["components"]["schemas"] = {**shared, **own}
    spec["paths"] = {**spec["paths"], **OPS_PATHS}
    ruled: dict[str, Any] = _ruled(spec)
    return ruled


def _read(package: str, name: str) -> dict[str, Any]:
    text = importlib.resources.files(package).joinpath(name).read_text()
    loaded: dict[str, Any] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return loaded


def _ruled(node: Any) -> Any:
    """`x-rule: <name>` replaced by the JSON Schema of that rule (storable.DOCUMENTED); what
    the node says beside it (a description, a pattern, its items) is kept."""
    if isinstance(node, list):
        return [_ruled(item) for item in node]
    if not isinstance(node, dict):
        return node
    ruled = {key: _ruled(value) for key, value in node.items() if key != "x-rule"}
    if "x-rule" in node:
        said = DOCUMENTED[node["x-rule"]].schema
        assert not said.keys() & ruled.keys() - {"items"}, f"bounds written twice: {node}"
        ruled = {**said, **ruled}
    return ruled


def add_docs_routes(app: web.Application, spec: dict[str, Any]) -> None:
    page = PAGE.format(title=spec["info"]["title"])

    async def openapi(_: web.Request) -> web.Response:
        return json_response(spec)

    async def docs(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
    app.router.add_static("/docs/assets", ASSETS)
