"""An OpenID Connect provider's signing keys (COUPONS_JWT_JWKS_URL), for verifying its
tokens without ever blocking the event loop.

PyJWT's PyJWKClient fetches and parses the key set, but synchronously; so it runs in a
thread, and the event loop only reads the keys in hand. A token naming a key not in hand
(the provider rotated its keys) starts one refresh and is answered 503 with Retry-After:
the retry finds the new key, or, once the set is fresh, learns that no such key exists
(401). Refreshes for unknown keys are at least REFRESH_COOLDOWN_S apart, so tokens naming
made-up keys cannot make us hammer the provider; the set is also refreshed every
`refresh_s`.
"""

import asyncio
import logging
import time

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientError

from runtime.http import Problem

log = logging.getLogger(__name__)

REFRESH_COOLDOWN_S = 10.0
FETCH_TIMEOUT_S = 5.0
RETRY_FAILED_S = 5.0  # while the provider cannot be reached
# Asymmetric algorithms only: a key set never holds a shared secret.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")


class KeySet:
    def __init__(self, url: str, refresh_s: float = 300.0) -> None:
        self.url = url
        self.refresh_s = refresh_s
        self.client = PyJWKClient(url, cache_jwk_set=False, timeout=FETCH_TIMEOUT_S)
        self.keys: dict[str, PyJWK] = {}
        self.fetched_at = float("-inf")  # monotonic time of the last fetch that worked
        self.asked_at = float("-inf")  # when a token naming an unknown key last caused a fetch
        self.problem: str | None = "the identity provider's keys are not fetched yet"
        self.fetching: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Fetch the key set now (in a thread); on failure keep the keys in hand."""
        try:
            found = await asyncio.to_thread(self.client.get_signing_keys, True)
        except (PyJWKClientError, OSError) as error:
            self.problem = f"the identity provider's keys at {self.url}: {error}"
            log.warning("%s", self.problem)
            return
        usable = {k.key_id: k for k in found if k.key_id and k.algorithm_name in ALGORITHMS}
        if usable.keys() != self.keys.keys():
            log.info("identity provider keys: %s", sorted(usable))
        self.keys, self.fetched_at, self.problem = usable, time.monotonic(), None

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the set fresh until `stop`: every `refresh_s`, sooner while failing."""
        while not stop.is_set():
            await self.refresh()
            wait_s = self.refresh_s if self.problem is None else RETRY_FAILED_S
            try:
                await asyncio.wait_for(stop.wait(), wait_s)
            except TimeoutError:
                pass

    def key(self, kid: str) -> PyJWK:
        """The key a token names; Problem 503 while a refresh may still bring it, 401 once
        the set is fresh and does not hold it."""
        found = self.keys.get(kid)
        if found is not None:
            return found
        if self.fetching is not None and not self.fetching.done():
            raise _refreshing()
        if time.monotonic() - self.asked_at >= REFRESH_COOLDOWN_S:
            self.asked_at = time.monotonic()
            self.fetching = asyncio.get_running_loop().create_task(self.refresh())
            raise _refreshing()
        if self.problem is not None:  # the provider cannot be reached: not the caller's fault
            raise _refreshing()
        raise Problem("unauthenticated", "the token's key is unknown")


def _refreshing() -> Problem:
    return Problem(
        "keys-refreshing",
        "the token names a key not fetched yet: try again",
        headers={"Retry-After": "1"},
    )
