"""The baseline: what people usually build. The same claim API, served by aiohttp, and
one PostgreSQL transaction per claim:

    UPDATE coupons SET issued = issued + 1 WHERE id = $1 AND issued < count …
    INSERT INTO user_days … (unique per person and day: the daily rule, when the coupon has it)
    INSERT INTO grants … (unique per coupon and person)

Tuned fairly: a connection pool as large as PostgreSQL serves well here, statements
prepared once per connection (asyncpg's statement cache), the same JSON and JWT code as
the gateway, access logs off.

    python -m bench.baseline     # PORT, DATABASE_URL, COUPONS_JWT_SECRET from the environment
"""

import os
import uuid

import asyncpg
from aiohttp import web

from bench.serving import ready, run, serve_until_stopped
from runtime import requests
from runtime.auth import Verifier, caller
from runtime.http import json_response, refusal

POOL_SIZE = 20
SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_coupons (
    id          uuid PRIMARY KEY,
    count       integer NOT NULL,
    issued      integer NOT NULL DEFAULT 0 CHECK (issued <= count),
    start_time  timestamptz NOT NULL,
    expiry      timestamptz NOT NULL,
    daily_rule  boolean NOT NULL DEFAULT true
);
CREATE TABLE IF NOT EXISTS baseline_user_days (
    user_id     text NOT NULL,
    day         date NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE TABLE IF NOT EXISTS baseline_grants (
    id          uuid PRIMARY KEY,
    coupon_id   uuid NOT NULL REFERENCES baseline_coupons (id),
    user_id     text NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (coupon_id, user_id)
);
"""
TAKE_UNIT = """
UPDATE baseline_coupons SET issued = issued + 1
WHERE id = $1 AND issued < count AND now() >= start_time AND now() < expiry
RETURNING daily_rule
"""
TAKE_DAY = """
INSERT INTO baseline_user_days (user_id, day) VALUES ($1, (now() AT TIME ZONE 'UTC')::date)
ON CONFLICT DO NOTHING RETURNING 1
"""
INSERT_GRANT = """
INSERT INTO baseline_grants (id, coupon_id, user_id) VALUES ($1, $2, $3)
ON CONFLICT (coupon_id, user_id) DO NOTHING RETURNING granted_at
"""
POOL = web.AppKey("pool", asyncpg.Pool)
VERIFIER = web.AppKey("verifier", Verifier)


class Refused(Exception):
    """Rolls the unit back: the person holds this coupon already, or one today."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def claim(request: web.Request) -> web.Response:
    who = caller(request, request.app[VERIFIER])
    coupon_id = requests.coupon_id(request)
    await requests.json_object(request, {"user_id"})
    grant_id = str(uuid.uuid4())
    try:
        async with request.app[POOL].acquire() as conn, conn.transaction():
            daily_rule = await conn.fetchval(TAKE_UNIT, coupon_id)
            if daily_rule is None:
                return refusal("sold_out")
            if daily_rule and await conn.fetchval(TAKE_DAY, who.user_id) is None:
                raise Refused("daily_limit")
            granted_at = await conn.fetchval(INSERT_GRANT, grant_id, coupon_id, who.user_id)
            if granted_at is None:
                raise Refused("already_claimed")
    except Refused as refused:
        return refusal(refused.reason)
    grant = {"id": grant_id, "coupon_id": coupon_id, "user_id": who.user_id,
             "granted_at": granted_at.isoformat()}  # fmt: skip
    return json_response({"status": "granted", "grant": grant}, status=201)


async def build_app(database_url: str, secret: str) -> web.Application:
    pool = await asyncpg.create_pool(database_url, min_size=POOL_SIZE, max_size=POOL_SIZE)
    assert pool is not None
    await pool.execute(SCHEMA)
    app = web.Application()
    app[POOL] = pool
    app[VERIFIER] = Verifier(secret)
    app.router.add_post("/v1/coupons/{coupon_id}/claims", claim)
    app.router.add_get("/readyz", ready)

    async def close_pool(_: web.Application) -> None:
        await pool.close()

    app.on_cleanup.append(close_pool)
    return app


async def main() -> None:

    app = await build_app(os.environ["DATABASE_URL"], os.environ["COUPONS_JWT_SECRET"])
    await serve_until_stopped(app, int(os.environ["PORT"]))


if __name__ == "__main__":
    run(main())
