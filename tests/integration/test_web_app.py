"""The web app people claim in (gateway/web/), in a real browser (Debian's chromium,
driven by Playwright): signing in on the local stack (by keyboard too), a coupon's
remaining units moving live, claiming it, the answer in words, a place in line kept
across a reload, and a grant's life. Each page is looked at (tests/support/webapp.py):
screenshots at desktop and phone widths, the phone layout and axe-core's rules."""

import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from playwright.async_api import Browser, Locator, Page, Route, expect

from tests.support.client import create_coupon, holders
from tests.support.stack import Stack
from tests.support.webapp import (
    PASSED_FROM_ANN_TO_BO,
    SHOWN_WITHIN_MS,
    looked_at,
    signed_in,
    two_people,
)

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]


async def test_two_people_claim_one_unit_and_see_it_go_live(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    coupon = await create_coupon(http, stack, 1, daily_limit=False, code="WEBAPP",
                                 message="One for the quickest")  # fmt: skip
    (ann, ann_card), (bo, bo_card) = await two_people(browser, stack, "WEBAPP")
    await expect(bo_card.get_by_text("1 of 1 left")).to_be_visible()
    await looked_at(bo, "coupons-before")
    await ann_card.get_by_role("button", name="Claim").click()
    await expect(ann_card.get_by_role("status")).to_contain_text(
        "Granted: ", timeout=SHOWN_WITHIN_MS
    )
    # bo's page learns of it from the coupon's live stream, without a reload.
    await expect(bo_card.get_by_text("0 of 1 left")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    await expect(bo_card.get_by_role("button", name="Claim")).to_be_disabled()
    await expect(bo_card.get_by_text("sold out")).to_be_visible()
    said = await ann_card.get_by_role("status").inner_text()
    await looked_at(ann, "coupons-granted")
    await looked_at(bo, "coupons-sold-out")
    code = said.removeprefix("Granted: ").strip()
    grants = await stack.fetch("SELECT user_id, code FROM grants WHERE coupon_id = $1",
                               coupon["id"])  # fmt: skip
    assert [(g["user_id"], g["code"]) for g in grants] == [("ann", code)]


async def test_a_coupon_goes_live_while_the_page_is_open_claimed_by_keyboard(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    start = datetime.now(UTC) + timedelta(seconds=10)
    await create_coupon(http, stack, 3, start=start, daily_limit=False, code="SOON")
    page = await browser.new_page()
    await page.goto(stack.gateway_url)
    await looked_at(page, "sign-in")
    await page.keyboard.press("Tab")  # the first thing to reach is the name
    await expect(page.get_by_label("Name", exact=True)).to_be_focused()
    await page.keyboard.type("cy")
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Signed in as cy")).to_be_visible()
    card = page.get_by_role("listitem", name="SOON", exact=True)
    claim = card.get_by_role("button", name="Claim")
    await expect(card.get_by_text("live in")).to_be_visible()
    await expect(claim).to_be_disabled()
    await looked_at(page, "scheduled")
    await expect(claim).to_be_enabled(timeout=SHOWN_WITHIN_MS)  # no reload
    assert await tabbed_to(page, claim), "Tab never reaches the coupon's Claim"
    await page.keyboard.press("Enter")
    await expect(card.get_by_role("status")).to_contain_text("Granted: ", timeout=SHOWN_WITHIN_MS)


async def tabbed_to(page: Page, target: Locator, presses_max: int = 30) -> bool:
    """Press Tab until `target` has the focus; False if it never does."""
    for _ in range(presses_max):
        await page.keyboard.press("Tab")
        if await target.evaluate("element => element === document.activeElement"):
            return True
    return False


async def test_a_claim_in_line_survives_a_lost_answer_and_a_reload(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    coupon = await create_coupon(http, stack, 1, daily_limit=False, code="LINE", hold_seconds=60)
    (ann, ann_card), (bo, bo_card) = await two_people(browser, stack, "LINE")
    await ann_card.get_by_role("button", name="Claim").click()
    await expect(ann_card.get_by_role("status")).to_contain_text("Held for you")
    await looked_at(ann, "held")
    # bo's first claim reaches the gateway, but its answer is lost on the way back.
    lost: list[int] = []
    sent: list[str] = []

    async def lose_the_first_answer(route: Route) -> None:
        sent.append(route.request.headers["idempotency-key"])
        if lost:
            return await route.continue_()
        lost.append((await route.fetch()).status)
        await route.abort()

    await bo.route("**/claims", lose_the_first_answer)
    await bo_card.get_by_role("button", name="Claim").click()
    await expect(bo_card.get_by_role("status")).to_contain_text("place 1 in line")
    await bo.reload()  # the ticket is kept: the page follows it, sends nothing again
    await expect(bo_card.get_by_role("status")).to_contain_text("place 1 in line")
    await expect(bo_card.get_by_role("button", name="Claim")).to_be_disabled()
    await looked_at(bo, "in-line")
    await ann_card.get_by_role("button", name="Cancel").click()
    confirm = bo_card.get_by_role("button", name="Confirm")
    await expect(confirm).to_be_visible(timeout=SHOWN_WITHIN_MS)
    await confirm.click()
    await expect(bo_card.get_by_role("status")).to_contain_text("Granted: ")
    await bo.reload()  # decided: nothing left to follow
    await expect(bo_card.get_by_text("sold out")).to_be_visible()
    await expect(bo_card.get_by_role("status")).to_have_text("")
    decided = await stack.fetch(
        "SELECT outcome FROM decisions WHERE user_id = 'bo' AND coupon_id = $1"
        " ORDER BY log_partition, log_offset",
        coupon["id"],
    )
    assert lost == [202] and len(sent) == 2 and sent[0] == sent[1]  # one key, sent twice
    assert [d["outcome"] for d in decided] == ["granted", "applied"]  # one claim, one confirm
    assert await holders(stack, coupon["id"]) == PASSED_FROM_ANN_TO_BO


async def test_a_lapsed_hold_passes_to_the_next_in_line_who_confirms(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    coupon = await create_coupon(http, stack, 1, daily_limit=False, code="HELD", hold_seconds=2)
    (ann, ann_card), (bo, bo_card) = await two_people(browser, stack, "HELD")
    # A hold of 2 s leaves little time: bo claims as soon as ann's answer is in.
    async with ann.expect_response(lambda r: r.url.endswith("/claims")):
        await ann_card.get_by_role("button", name="Claim").click()
    await bo_card.get_by_role("button", name="Claim").click()  # ann does not confirm
    await expect(ann_card.get_by_role("status")).to_contain_text("Held for you: confirm within")
    await expect(ann_card.get_by_role("button", name="Confirm")).to_be_visible()
    await expect(bo_card.get_by_role("status")).to_contain_text("place 1 in line")
    # ann's hold lapses: the unit passes to bo, live, held for him in turn.
    confirm = bo_card.get_by_role("button", name="Confirm")
    await expect(confirm).to_be_visible(timeout=SHOWN_WITHIN_MS)
    await confirm.click()
    await expect(bo_card.get_by_role("status")).to_contain_text("Granted: ")
    mine = bo.get_by_role("listitem", name=re.compile("^HELD "))
    await expect(mine.get_by_text("assigned")).to_be_visible(timeout=SHOWN_WITHIN_MS)
    assert await holders(stack, coupon["id"]) == PASSED_FROM_ANN_TO_BO


async def test_a_grant_is_locked_and_redeemed_and_a_second_redeem_says_why_not(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    await create_coupon(http, stack, 5, daily_limit=False, code="REDEEM")
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
    await looked_at(page, "my-coupons")
    await stale.get_by_role("button", name="Redeem").click()
    await expect(stale.get_by_role("status")).to_have_text("the grant has been redeemed")
    await looked_at(other, "second-redeem")
