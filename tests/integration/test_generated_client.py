"""A client generated from the gateway's own /openapi.json by openapi-python-client, as an
integrator would make one, drives a coupon through a claim, a lock and a redeem (issue 26:
the generator dropped PUT /v1/audiences/{name}, and its Coupon lacked ten fields)."""

import asyncio
import contextlib
import importlib
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from tests.support.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]
CONFIG = Path(__file__).parents[1] / "support" / "openapi-python-client.yaml"
GENERATE_TIMEOUT_S = 120.0
PACKAGE = "coupons_client"


def generated(document: Path, into: Path) -> dict[str, ModuleType]:
    """The client's modules, generated from `document`; a warning fails the generation (an
    operation it would leave out, a header it cannot send)."""
    made = subprocess.run(
        [str(Path(sys.executable).parent / "openapi-python-client"), "generate",
         "--path", str(document), "--output-path", str(into / PACKAGE), "--meta", "none",
         "--config", str(CONFIG), "--fail-on-warning"],
        capture_output=True, text=True, timeout=GENERATE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    sys.path.insert(0, str(into))
    try:
        names = ("", ".models", ".api.coupons.create_coupon", ".api.claims.claim",
                 ".api.grants.step_grant", ".api.audiences.save_audience",
                 ".api.campaigns.upload_codes", ".types")  # fmt: skip
        return {name: importlib.import_module(PACKAGE + name) for name in names}
    finally:
        sys.path.remove(str(into))


async def test_a_generated_client_claims_locks_and_redeems(stack: Stack, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.gateway_url}/openapi.json") as response:
            (tmp_path / "openapi.json").write_bytes(await response.read())
    client = generated(tmp_path / "openapi.json", tmp_path)
    models = client[".models"]

    def as_(who: str, admin: bool = False) -> Any:
        token = stack.token(who, admin=admin)
        return client[""].AuthenticatedClient(base_url=stack.gateway_url, token=token)

    async with contextlib.AsyncExitStack() as clients:  # each closes its connections
        ops, gus, gil = [await clients.enter_async_context(as_(who, admin=who == "ops"))
                         for who in ("ops", "gus", "gil")]  # fmt: skip
        await _through(client, models, ops, gus, gil)


async def _through(
    client: dict[str, ModuleType], models: Any, ops: Any, gus: Any, gil: Any
) -> None:
    """One coupon claimed by gus and gil (one unit: gil is refused), gus's grant locked and
    redeemed; an audience saved new; codes uploaded as a file. `ops` is an admin."""
    now = datetime.now(UTC)
    new = models.NewCoupon(
        code="GEN", count=1, start_time=now - timedelta(seconds=1), expiry=now + timedelta(days=1),
        message="made by a generated client",
    )  # fmt: skip
    by_codes = models.NewCoupon.from_dict({**new.to_dict(), "code_source": "uploaded", "count": 2})
    made = await client[".api.coupons.create_coupon"].asyncio_detailed(
        client=ops, body=new, prefer="wait=10"
    )
    coupon = made.parsed
    assert isinstance(coupon, models.Coupon), made.content
    assert (coupon.hold_seconds, coupon.daily_limit, coupon.additional_properties) == (0, True, {})
    claim = client[".api.claims.claim"]
    won = await claim.asyncio_detailed(
        coupon.id, client=gus, body=models.ClaimBody(), idempotency_key="g1",
        prefer="wait=10",
    )  # fmt: skip
    assert isinstance(won.parsed, models.ClaimResponse201), won.content
    grant = won.parsed.grant
    assert grant.additional_properties == {}
    lost = await claim.asyncio_detailed(
        coupon.id, client=gil, body=models.ClaimBody(), prefer="wait=10"
    )
    assert isinstance(lost.parsed, models.Problem), lost.content
    assert (lost.status_code, lost.parsed.reason) == (409, "sold_out")
    step = client[".api.grants.step_grant"].asyncio_detailed
    locked = await step(grant.id, models.StepGrantAction.LOCK, client=gus,
                        body=models.StepGrantBody(), prefer="wait=10")  # fmt: skip
    assert isinstance(locked.parsed, models.StepGrantResponse200), locked.content
    assert locked.parsed.state == models.GrantState.LOCKED
    redeemed = await step(grant.id, models.StepGrantAction.REDEEM, client=gus,
                          body=models.StepGrantBody(lock_id=locked.parsed.lock_id),
                          prefer="wait=10")  # fmt: skip
    assert isinstance(redeemed.parsed, models.StepGrantResponse200), redeemed.content
    assert (redeemed.parsed.state, redeemed.parsed.redemptions) == (models.GrantState.REDEEMED, 1)
    # The operation the generator used to drop: a header that must be "*".
    saved = await client[".api.audiences.save_audience"].asyncio_detailed(
        "gen-list", client=ops,
        body=models.SaveAudienceJsonBody(members=["gus", "gil"]),
        if_none_match=models.SaveAudienceIfNoneMatch.VALUE_0,
    )  # fmt: skip
    assert isinstance(saved.parsed, models.SavedAudience), saved.content
    assert (saved.status_code, saved.parsed.size) == (201, 2)
    # And the other: codes uploaded as a CSV file.
    uploaded = await client[".api.coupons.create_coupon"].asyncio_detailed(
        client=ops, body=by_codes, prefer="wait=10"
    )
    assert isinstance(uploaded.parsed, models.Coupon), uploaded.content
    csv = client[".types"].File(payload=io.BytesIO(b"code\nGEN-1\nGEN-2\n"))

    # A file is sent by the blocking client (the generated async one hands httpx's async
    # client a file it can only read blocking).
    def upload() -> Any:
        with ops.with_headers({}) as blocking:
            return client[".api.campaigns.upload_codes"].sync_detailed(
                uploaded.parsed.id, client=blocking, body=csv, prefer="wait=10"
            )

    added = await asyncio.to_thread(upload)
    assert isinstance(added.parsed, models.UploadCodesResponse200), added.content
    assert (added.parsed.added, added.parsed.codes_left) == (2, 2)
