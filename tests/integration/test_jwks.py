"""Tokens from an OpenID Connect provider, verified against its JWKS
(COUPONS_JWT_JWKS_URL): keys fetched and kept, a rotation followed without a restart,
unknown or forged keys refused, a provider that goes away does not stop the service, and
a person signing in to the web app at the provider (authorization code with PKCE)."""

import asyncio
import time
from pathlib import Path

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from playwright.async_api import expect

from deploy.stack import Infra
from runtime.auth import Verifier
from runtime.http import Problem
from runtime.jwks import KeySet
from tests.support.artifacts import launched
from tests.support.client import post
from tests.support.jwks import hs256_by_hand, provider
from tests.support.stack import build_stack
from tests.support.webapp import SHOWN_WITHIN_MS

pytestmark = pytest.mark.integration


def refused(verifier: Verifier, token: str) -> tuple[int, str, str | None]:
    """Status, detail and Retry-After of the problem verifying `token` raises."""
    with pytest.raises(Problem) as caught:
        verifier.verify(token)
    response = caught.value.response
    return response.status, str(caught.value), response.headers.get("Retry-After")


async def test_keys_rotate_and_unknown_or_forged_keys_are_refused() -> None:
    with provider() as idp:
        for kid in ("a", "b", "stranger"):
            idp.new_key(kid)
        idp.publish("a")
        keys = KeySet(idp.url)
        await keys.refresh()
        verifier = Verifier("", "RS256", keys=keys)
        assert verifier.verify(idp.token("a", "ann", admin=True)).admin
        idp.publish("b")  # the provider rotates: a is gone, b is new
        status, _, retry_after = refused(verifier, idp.token("b", "bo"))
        assert (status, retry_after) == (503, "1")
        assert keys.fetching is not None
        await keys.fetching  # the one refresh that token started
        assert verifier.verify(idp.token("b", "bo")).user_id == "bo"
        fetched = idp.fetches
        # Within the cooldown the set is fresh: keys it lacks are refused, not fetched for.
        gone, never = (
            refused(verifier, idp.token("a", "ann")),
            refused(verifier, idp.token("stranger", "x")),
        )
        soon = int(time.time()) + 60
        forged = jwt.encode({"sub": "mallory", "exp": soon}, idp.keys["stranger"],
                            algorithm="RS256", headers={"kid": "b"})  # fmt: skip
        public_pem = (
            idp.keys["b"]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        confused = hs256_by_hand(public_pem, {"sub": "mallory"}, kid="b")
        unnamed = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, idp.keys["b"],
                             algorithm="RS256")  # fmt: skip
        for said in (gone, never):
            assert said == (401, "the token's key is unknown", None)
        assert refused(verifier, forged)[:2] == (401, "Signature verification failed")
        assert refused(verifier, confused)[0] == 401
        assert refused(verifier, unnamed)[:2] == (401, "the token names no key (kid)")
        assert idp.fetches == fetched  # made-up keys did not make us ask the provider
    # The provider is gone: the keys in hand still verify; fetching says why it failed.
    await keys.refresh()
    assert keys.problem is not None and "identity provider" in keys.problem
    assert verifier.verify(idp.token("b", "bo")).user_id == "bo"


async def test_the_gateway_follows_a_rotation_without_a_restart(
    infra: Infra, tmp_path: Path
) -> None:
    with provider() as idp:
        idp.new_key("first")
        idp.new_key("second")
        idp.publish("first")
        stack = await asyncio.to_thread(
            build_stack, infra, "jwks", None,
            {"COUPONS_JWT_SECRET": "", "COUPONS_JWT_JWKS_URL": idp.url,
             "COUPONS_TICKET_SECRET": "tickets-" + "t" * 32},
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as http:
                body = {"code": "OIDC", "message": "m", "count": 5, "daily_limit": False,
                        "start_time": "2020-01-01T00:00:00Z",
                        "expiry": "2999-01-01T00:00:00Z"}  # fmt: skip
                made = await post(http, f"{stack.gateway_url}/v1/coupons",
                                  idp.token("first", "ops", admin=True), body)  # fmt: skip
                claims = f"{stack.gateway_url}/v1/coupons/{made.body['id']}/claims"
                ann = await post(http, claims, idp.token("first", "ann"), {})
                idp.publish("second")  # rotated while running
                first_try = await post(http, claims, idp.token("second", "bo"), {})
                bo = first_try
                deadline = time.monotonic() + 10
                while bo.status == 503 and time.monotonic() < deadline:
                    await asyncio.sleep(float(bo.headers.get("Retry-After", "1")))
                    bo = await post(http, claims, idp.token("second", "bo"), {})
                forged = await post(http, claims, idp.token("first", "eve"), {})
                # No shared secret to sign with: the development sign-in is not here.
                dev_sign_in = await post(http, f"{stack.gateway_url}/v1/dev/token",
                                         idp.token("second", "x"),
                                         {"name": "mallory", "admin": True})  # fmt: skip
                streams = f"{stack.env['NOTIFIER_PUBLIC_URL']}/v1/users/me/events"
                listened = await status_of(http, streams, idp.token("second", "bo"))
                turned_away = await status_of(http, streams, idp.token("first", "bo"))
        finally:
            await asyncio.to_thread(stack.stop)
    assert (made.status, ann.status) == (201, 201), (made.body, ann.body)
    assert first_try.status == 503 and first_try.headers["Retry-After"] == "1"
    assert first_try.headers["Content-Type"].startswith("application/problem+json")
    assert bo.status == 201 and bo.body["grant"]["user_id"] == "bo"
    assert forged.status == 401  # the first key is no longer published
    assert dev_sign_in.status == 404
    assert (listened, turned_away) == (200, 401)  # the notifier verifies the same way


async def status_of(http: aiohttp.ClientSession, url: str, token: str) -> int:
    """The status a live stream opens with (it is closed at once), asked again while the
    notifier answers 503 (its own refresh of the keys, as a careful client would)."""
    deadline = time.monotonic() + 10
    while True:
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 503 or time.monotonic() > deadline:
                return response.status
            wait_s = float(response.headers.get("Retry-After", "1"))
        await asyncio.sleep(wait_s)


async def test_a_person_signs_in_at_the_provider_in_the_web_app_and_claims(
    infra: Infra,
) -> None:
    with provider() as idp:
        idp.new_key("only")
        idp.publish("only")
        stack = await asyncio.to_thread(
            build_stack, infra, "oidc", None,
            {"COUPONS_JWT_SECRET": "", "COUPONS_JWT_JWKS_URL": idp.url,
             "COUPONS_JWT_ISSUER": idp.issuer, "COUPONS_JWT_AUDIENCE": "coupons-web",
             "COUPONS_OIDC_CLIENT_ID": "coupons-web",
             "COUPONS_TICKET_SECRET": "tickets-" + "t" * 32},
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as http, launched() as browser:
                admin = idp.token("only", "ops", admin=True, iss=idp.issuer, aud="coupons-web")
                body = {"code": "OIDC", "message": "m", "count": 5, "daily_limit": False,
                        "start_time": "2020-01-01T00:00:00Z",
                        "expiry": "2999-01-01T00:00:00Z"}  # fmt: skip
                made = await post(http, f"{stack.gateway_url}/v1/coupons", admin, body)
                page = await browser.new_page()
                await page.goto(stack.gateway_url)
                await expect(page.get_by_label("Name", exact=True)).to_be_hidden()
                await page.get_by_role("button", name="Sign in").click()
                await page.get_by_label("Username").fill("ann")  # the provider's own page
                await page.get_by_role("button", name="Continue").click()
                await expect(page.get_by_text("Signed in as ann")).to_be_visible()
                back_at = page.url
                card = page.get_by_role("listitem", name="OIDC", exact=True)
                await card.get_by_role("button", name="Claim").click()
                await expect(card.get_by_role("status")).to_contain_text(
                    "Granted: ", timeout=SHOWN_WITHIN_MS
                )
                await page.reload()  # the token is kept; the used code is not
                await expect(page.get_by_text("Signed in as ann")).to_be_visible()
                admin_shown = await page.get_by_role("heading", name="Admin console").is_visible()
                unused = dict(idp.codes)
        finally:
            await asyncio.to_thread(stack.stop)
    assert made.status == 201, made.body
    assert back_at == f"{stack.gateway_url}/"  # no code left in the address
    assert unused == {}  # the one code given was exchanged
    assert not admin_shown  # ann has no admin role at the provider
    rows = await stack.fetch("SELECT user_id FROM grants")
    assert [r["user_id"] for r in rows] == ["ann"]
