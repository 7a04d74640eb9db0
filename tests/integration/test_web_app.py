"""The web app people claim in (gateway/web/), in a real browser (Debian's chromium,
driven by Playwright): signing in on the local stack, a coupon's remaining units moving
live, claiming it, and the answer in words. Screenshots at desktop and phone widths are
kept as test artifacts."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.support.artifacts import artifact, launched
from tests.support.client import create_coupon
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

SHOWN_WITHIN_MS = 15_000
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


async def signed_in(
    browser: Browser,
    stack: Stack,
    name: str,
    width: str = "desktop",
    page: Page | None = None,
    admin: bool = False,
) -> Page:
    page = page or await browser.new_page(viewport=WIDTHS[width])  # type: ignore[arg-type]
    await page.goto(stack.gateway_url)
    await page.get_by_label("Name").fill(name)
    if admin:
        await page.get_by_label("Admin", exact=True).check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    return page


async def two_people(
    browser: Browser, stack: Stack, code: str
) -> tuple[tuple[Page, Locator], tuple[Page, Locator]]:
    """ann at a desktop and bo on a phone, signed in, each with the coupon's card."""
    ann = await signed_in(browser, stack, "ann")
    bo = await signed_in(browser, stack, "bo", "phone")
    return (
        (ann, ann.get_by_role("listitem", name=code, exact=True)),
        (bo, bo.get_by_role("listitem", name=code, exact=True)),
    )


async def test_two_people_claim_one_unit_and_see_it_go_live(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session, launched() as browser:
        coupon = await create_coupon(session, stack, 1, daily_limit=False, code="WEBAPP",
                                     message="One for the quickest")  # fmt: skip
        (ann, ann_card), (bo, bo_card) = await two_people(browser, stack, "WEBAPP")
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
    code = said.removeprefix("Granted: ").strip()
    grants = await stack.fetch("SELECT user_id, code FROM grants WHERE coupon_id = $1",
                               coupon["id"])  # fmt: skip
    assert [(g["user_id"], g["code"]) for g in grants] == [("ann", code)]


async def artifact_shots(ann: Page, bo: Page, moment: str) -> None:
    for page, width in ((ann, "desktop"), (bo, "phone")):
        await page.screenshot(path=artifact(f"web-coupons-{moment}-{width}.png"), full_page=True)


async def test_a_coupon_goes_live_while_the_page_is_open(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session, launched() as browser:
        start = datetime.now(UTC) + timedelta(seconds=4)
        await create_coupon(session, stack, 3, start=start, daily_limit=False, code="SOON")
        page = await signed_in(browser, stack, "cy")
        card = page.get_by_role("listitem", name="SOON", exact=True)
        claim = card.get_by_role("button", name="Claim")
        await expect(card.get_by_text("live in")).to_be_visible()
        await expect(claim).to_be_disabled()
        await page.screenshot(path=artifact("web-scheduled-desktop.png"), full_page=True)
        await expect(claim).to_be_enabled(timeout=SHOWN_WITHIN_MS)  # no reload
        await claim.click()
        await expect(card.get_by_role("status")).to_contain_text(
            "Granted: ", timeout=SHOWN_WITHIN_MS
        )


async def test_a_lapsed_hold_passes_to_the_next_in_line_who_confirms(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session, launched() as browser:
        await create_coupon(session, stack, 1, daily_limit=False, code="HELD", hold_seconds=2)
        (ann, ann_card), (bo, bo_card) = await two_people(browser, stack, "HELD")
        # A hold of 2 s leaves little time: bo claims as soon as ann's answer is in.
        async with ann.expect_response(lambda r: r.url.endswith("/claims")):
            await ann_card.get_by_role("button", name="Claim").click()
        await bo_card.get_by_role("button", name="Claim").click()  # ann does not confirm
        await expect(ann_card.get_by_role("status")).to_contain_text("Held for you: confirm within")
        await expect(ann_card.get_by_role("button", name="Confirm")).to_be_visible()
        await expect(bo_card.get_by_role("status")).to_contain_text("place 1 in line")
        await ann.screenshot(path=artifact("web-held-desktop.png"), full_page=True)
        # ann's hold lapses: the unit passes to bo, live, held for him in turn.
        confirm = bo_card.get_by_role("button", name="Confirm")
        await expect(confirm).to_be_visible(timeout=SHOWN_WITHIN_MS)
        await confirm.click()
        await bo.screenshot(path=artifact("web-confirmed-phone.png"), full_page=True)
        await expect(bo_card.get_by_role("status")).to_contain_text("Granted: ")
        mine = bo.get_by_role("listitem", name=re.compile("^HELD "))
        await expect(mine.get_by_text("assigned")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    rows = await stack.fetch("SELECT user_id, state FROM grants ORDER BY granted_at")
    assert [tuple(r) for r in rows] == [("ann", "released"), ("bo", "assigned")]


async def test_a_grant_is_locked_and_redeemed_and_a_second_redeem_says_why_not(
    stack: Stack,
) -> None:
    async with aiohttp.ClientSession() as session, launched() as browser:
        await create_coupon(session, stack, 5, daily_limit=False, code="REDEEM")
        page = await signed_in(browser, stack, "di")
        card = page.get_by_role("listitem", name="REDEEM", exact=True)
        await card.get_by_role("button", name="Claim").click()
        grant = page.get_by_role("listitem", name=re.compile("^REDEEM "))
        await expect(grant.get_by_text("assigned")).to_be_visible(timeout=SHOWN_WITHIN_MS)
        # The same person in another tab whose live stream does not get through (a
        # network that drops it), so it still offers Redeem after the first tab redeemed.
        other = await browser.new_page()
        await other.route("**/v1/users/me/events", lambda route: route.abort())
        other = await signed_in(browser, stack, "di", page=other)
        stale = other.get_by_role("listitem", name=re.compile("^REDEEM "))
        await grant.get_by_role("button", name="Lock").click()
        await expect(grant.get_by_role("status")).to_have_text("locked")
        await grant.get_by_role("button", name="Redeem").click()
        await expect(grant.get_by_role("status")).to_have_text("redeemed")
        await expect(grant.get_by_role("button", name="Redeem")).to_be_hidden()
        await grant.get_by_text("History").click()
        await expect(grant.get_by_role("listitem").filter(has_text="redeemed")).to_be_visible()
        await page.screenshot(path=artifact("web-my-coupons-desktop.png"), full_page=True)
        await stale.get_by_role("button", name="Redeem").click()
        await expect(stale.get_by_role("status")).to_have_text("the grant has been redeemed")
        await other.screenshot(path=artifact("web-second-redeem-desktop.png"), full_page=True)


async def test_an_admin_runs_a_campaign_from_the_console(stack: Stack, tmp_path: Path) -> None:
    codes = tmp_path / "codes.csv"
    codes.write_text("code\nGIFT-1\nGIFT-2\nGIFT-3\n")
    async with launched() as browser:
        page = await signed_in(browser, stack, "ops", admin=True)
        create = page.get_by_role("form", name="Create a coupon")
        await create.get_by_label("Code", exact=True).fill("GIFTS")
        await create.get_by_label("Message").fill("Three gifts")
        await create.get_by_label("Count").fill("3")
        await create.get_by_label("Codes").select_option("uploaded")
        await create.get_by_label("One coupon per person per day").uncheck()
        await create.get_by_role("button", name="Create coupon").click()
        await expect(page.get_by_text("Created GIFTS")).to_be_visible(timeout=SHOWN_WITHIN_MS)
        await page.get_by_label("Coupon", exact=True).select_option(label="GIFTS")
        await page.get_by_label("Codes (CSV)").set_input_files(codes)
        await page.get_by_role("button", name="Upload codes").click()
        said = page.locator("#admin-said")
        await expect(said).to_have_text("3 codes added; 3 left", timeout=SHOWN_WITHIN_MS)
        distribute = page.get_by_role("form", name="Distribute")
        await distribute.get_by_label("People (one per line)").fill("ann\nbo\ncy\ndi")
        await distribute.get_by_role("button", name="Preview").click()
        await expect(said).to_have_text("Preview: 3 grants", timeout=SHOWN_WITHIN_MS)
        previewed = await page.locator("#admin-table").inner_text()
        await page.screenshot(path=artifact("web-admin-preview-desktop.png"), full_page=True)
        await page.get_by_role("button", name="Apply").click()
        await expect(said).to_have_text("Applied: 3 grants", timeout=SHOWN_WITHIN_MS)
        applied = await page.locator("#admin-table").inner_text()
        close = page.get_by_role("form", name="Close")
        await close.get_by_label("Revoke grants not redeemed").check()
        await close.get_by_role("button", name="Close coupon").click()
        await expect(said).to_have_text("Closed; 3 grants revoked", timeout=SHOWN_WITHIN_MS)
        await page.get_by_role("button", name="Grants").click()
        await expect(page.locator("#admin-table")).to_contain_text("revoked")
        await page.screenshot(path=artifact("web-admin-closed-desktop.png"), full_page=True)
    rows = await stack.fetch("SELECT user_id, code, state FROM grants ORDER BY seq")
    assert previewed == applied  # the preview was exactly what was applied
    assert [(r["code"], r["state"]) for r in rows] == [
        ("GIFT-1", "revoked"), ("GIFT-2", "revoked"), ("GIFT-3", "revoked")
    ]  # fmt: skip
    assert sorted(r["user_id"] for r in rows) == ["ann", "bo", "cy"]  # fcfs: list order
