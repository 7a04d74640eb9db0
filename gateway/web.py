"""The web app people claim in (`/`, files in gateway/web/: plain HTML, CSS and ES
modules, no build step), and the development sign-in it uses on the local stack.

The app speaks only the public API: this gateway's routes, and the notifier's tickets and
live streams (NOTIFIER_PUBLIC_URL, which it is told in /app/config.json).
"""

import importlib.resources

from aiohttp import web

from gateway.pipeline import GATEWAY
from runtime import requests
from runtime.auth import mint_token
from runtime.http import Problem, json_response

FILES = importlib.resources.files("gateway") / "web"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
DEV_TOKEN_TTL_S = 12 * 3600


def add_web_routes(app: web.Application) -> None:
    app.router.add_get("/", page)
    app.router.add_get("/app/config.json", config)
    app.router.add_get("/app/{name}", asset)


async def page(_: web.Request) -> web.Response:
    return _file("index.html")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if "/" in name or name.startswith(".") or not any(name.endswith(t) for t in TYPES):
        raise Problem("not-found", f"no file {name}")
    return _file(name)


async def config(request: web.Request) -> web.Response:
    """What the app needs to know: where the live streams are, whether the development
    sign-in exists here, and the OpenID Connect provider it signs in at, if any."""
    settings = request.app[GATEWAY].settings
    oidc = None
    if settings.oidc_client_id:
        issuer = settings.jwt.issuer
        oidc = {
            "issuer": issuer,
            "client_id": settings.oidc_client_id,
            "scope": settings.oidc_scope,
        }
    return json_response(
        {"notifier": settings.notifier_public_url, "dev_sign_in": _development(request),
         "oidc": oidc}
    )  # fmt: skip


async def dev_token(request: web.Request) -> web.Response:
    """POST /v1/dev/token {"name", "admin"}: a token for that name, signed with the local
    stack's secret. Development only: in production there is no such route (404)."""
    if not _development(request):
        raise Problem("not-found", "no development sign-in here")
    body = await requests.json_object(request, {"name", "admin"})
    name = requests.user_id(body, "name")
    admin = body.get("admin", False)
    if not isinstance(admin, bool):
        raise Problem("invalid-request", "admin is true or false")
    settings = request.app[GATEWAY].settings
    token = mint_token(settings.jwt.key, name, admin=admin, ttl_s=DEV_TOKEN_TTL_S)
    return json_response({"token": token, "user_id": name, "admin": admin})


def _development(request: web.Request) -> bool:
    """Development, with a shared secret to sign with (an RS256 or JWKS stack has none)."""
    settings = request.app[GATEWAY].settings
    return (
        settings.environment == "development"
        and settings.jwt.algorithm == "HS256"
        and (settings.jwt.keys is None)
    )


def _file(name: str) -> web.Response:
    found = FILES / name
    if not found.is_file():
        raise Problem("not-found", f"no file {name}")
    suffix = name[name.rfind(".") :]
    return web.Response(
        body=found.read_bytes(),
        content_type=TYPES[suffix],
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )
