"""The ceiling: a bare aiohttp endpoint that reads a claim exactly as the gateway does
(JWT, path, JSON body) and answers a constant. No service can beat it over HTTP here.

    python -m bench.ceiling      # PORT, COUPONS_JWT_SECRET from the environment
"""

import os

import orjson
from aiohttp import web

from bench.serving import ready, run, serve_until_stopped
from runtime import requests
from runtime.auth import Verifier, caller

ANSWER = orjson.dumps({"type": "about:blank", "title": "Claim rejected", "status": 409,
                       "detail": "every unit of this coupon has been given out",
                       "reason": "sold_out"})  # fmt: skip
VERIFIER = web.AppKey("verifier", Verifier)


async def claim(request: web.Request) -> web.Response:
    caller(request, request.app[VERIFIER])
    requests.coupon_id(request)
    await requests.json_object(request, {"user_id"})
    return web.Response(body=ANSWER, status=409, content_type="application/problem+json")


def build_app(secret: str) -> web.Application:
    app = web.Application()
    app[VERIFIER] = Verifier(secret)
    app.router.add_post("/v1/coupons/{coupon_id}/claims", claim)
    app.router.add_get("/readyz", ready)
    return app


async def main() -> None:

    await serve_until_stopped(build_app(os.environ["COUPONS_JWT_SECRET"]), int(os.environ["PORT"]))


if __name__ == "__main__":
    run(main())
