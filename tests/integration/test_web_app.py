"""The web app people claim in (gateway/web/), in a real browser (Debian's chromium,
driven by Playwright): signing in on the local stack, a coupon's remaining units moving
live, claiming it, and the answer in words. Screenshots at desktop and phone widths are
kept as test artifacts."""

import os
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.artifacts import artifact, chromium
from tests.support.client import create_coupon
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

SHOWN_WITHIN_MS = 15_000
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


async def signed_in(browser: Browser, stack: Stack, name: str, width: str = "desktop") -> Page:
    page = await browser.new_page(viewport=WIDTHS[width])  # type: ignore[arg-type]
    await page.goto(stack.gateway_url)
    await page.get_by_label("Name").fill(name)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    return page


async def test_two_people_claim_one_unit_and_see_it_go_live(stack: Stack) -> None:
    root = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium's sandbox refuses root
    async with aiohttp.ClientSession() as session, async_playwright() as playwright:
        coupon = await create_coupon(session, stack, 1, daily_limit=False, code="WEBAPP",
                                     message="One for the quickest")  # fmt: skip
        browser = await playwright.chromium.launch(executable_path=chromium(), args=root)
        try:
            ann = await signed_in(browser, stack, "ann")
            bo = await signed_in(browser, stack, "bo", "phone")
            ann_card = ann.get_by_role("listitem", name="WEBAPP")
            bo_card = bo.get_by_role("listitem", name="WEBAPP")
            await expect(bo_card.get_by_text("1 of 1 left")).to_be_visible()
            await artifact_shots(ann, bo, "before")
            await ann_card.get_by_role("button", name="Claim").click()
            await expect(ann_card.get_by_role("status")).to_contain_text(
                "Granted: ", timeout=SHOWN_WITHIN_MS
            )
            # bo's page learns of it from the coupon's live stream, without a reload.
            await expect(bo_card.get_by_text("0 of 1 left")).to_be_visible(timeout=SHOWN_WITHIN_MS)
            await expect(bo_card.get_by_role("button", name="Claim")).to_be_disabled()
            await expect(bo_card.get_by_text("sold out")).to_be_visible()
            said = await ann_card.get_by_role("status").inner_text()
            await artifact_shots(ann, bo, "after")
        finally:
            await browser.close()
    code = said.removeprefix("Granted: ").strip()
    grants = await stack.fetch("SELECT user_id, code FROM grants WHERE coupon_id = $1",
                               coupon["id"])  # fmt: skip
    assert [(g["user_id"], g["code"]) for g in grants] == [("ann", code)]


async def artifact_shots(ann: Page, bo: Page, moment: str) -> None:
    for page, width in ((ann, "desktop"), (bo, "phone")):
        await page.screenshot(path=artifact(f"web-coupons-{moment}-{width}.png"), full_page=True)


async def test_a_coupon_goes_live_while_the_page_is_open(stack: Stack) -> None:
    root = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with aiohttp.ClientSession() as session, async_playwright() as playwright:
        start = datetime.now(UTC) + timedelta(seconds=4)
        await create_coupon(session, stack, 3, start=start, daily_limit=False, code="SOON")
        browser = await playwright.chromium.launch(executable_path=chromium(), args=root)
        try:
            page = await signed_in(browser, stack, "cy")
            card = page.get_by_role("listitem", name="SOON")
            claim = card.get_by_role("button", name="Claim")
            await expect(card.get_by_text("live in")).to_be_visible()
            await expect(claim).to_be_disabled()
            await page.screenshot(path=artifact("web-scheduled-desktop.png"), full_page=True)
            await expect(claim).to_be_enabled(timeout=SHOWN_WITHIN_MS)  # no reload
            await claim.click()
            await expect(card.get_by_role("status")).to_contain_text(
                "Granted: ", timeout=SHOWN_WITHIN_MS
            )
        finally:
            await browser.close()
