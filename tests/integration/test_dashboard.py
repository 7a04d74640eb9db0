"""The operators' dashboard in a real browser (Debian's chromium, driven by Playwright):
the numbers on the page move while a burst of claims is decided. The screenshot is kept
as a test artifact (`test-artifacts/dashboard.png`, or $COUPONS_ARTIFACTS)."""

import asyncio

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from schemas.topics import partition_of
from tests.support.artifacts import artifact
from tests.support.client import PARTITIONS, claim, create_coupon
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

UNITS = 150
CLAIMS = 300
SHOWN_WITHIN_MS = 15_000


async def test_the_dashboard_moves_while_a_burst_is_decided(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    notifier = stack.env["NOTIFIER_PUBLIC_URL"]
    coupon = await create_coupon(http, stack, UNITS, daily_limit=False, code="DASHBOARD")
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    await page.goto(f"{notifier}/dashboard")
    remaining = page.locator(f'tr[data-coupon="{coupon["id"]}"] td.remaining')
    await expect(remaining).to_have_text(str(UNITS), timeout=SHOWN_WITHIN_MS)
    await expect(page.locator("#status")).to_have_text("live")
    rate_before = float(await page.locator("#rate").inner_text())
    burst = [claim(http, stack, coupon["id"], f"viewer-{i}") for i in range(CLAIMS)]
    answers = await asyncio.gather(*burst)
    await expect(remaining).to_have_text("0", timeout=SHOWN_WITHIN_MS)
    rate_after = float(await page.locator("#rate").inner_text())
    p50 = await page.locator("#p50").inner_text()
    # Which allocator owns the coupon's partition, as the SRE reads it.
    partition = partition_of(coupon["id"], PARTITIONS)
    owner = page.locator(f'#partitions tr[data-partition="{partition}"] td.owner')
    await expect(owner).to_have_text(stack.allocators[0].name)
    shot = artifact("dashboard.png")
    await page.screenshot(path=shot, full_page=True)
    statuses = sorted({a.status for a in answers})
    print(f"\ndashboard: {UNITS} → 0 remaining, decisions/s {rate_before} → {rate_after}, "
          f"p50 {p50}; screenshot {shot.resolve()}")  # fmt: skip
    assert statuses == [201, 409]
    assert rate_after > rate_before and p50.endswith(" ms")
    assert shot.stat().st_size > 10_000  # a page was drawn, not a blank image
