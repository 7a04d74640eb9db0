"""Driving the web app (gateway/web/) in a real browser: signing in as a person, and
looking at a page at both widths: a screenshot of each kept as a test artifact, the
layout checked to fit a phone, and the page checked against axe-core's WCAG A and AA
rules. The browser tests' two fixtures: `browser`, and `http` for the API around it."""

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Locator, Page, ViewportSize, expect

from tests.support.artifacts import artifact, launched
from tests.support.stack import Stack

SHOWN_WITHIN_MS = 15_000
WIDTHS: dict[str, ViewportSize] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}
AXE_RULES: dict[str, Any] = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
_axe = Axe()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A browser of the test's own, closed after it."""
    async with launched() as browser:
        yield browser


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The test's HTTP session, for what it asks of the API beside the pages (coupons)."""
    async with aiohttp.ClientSession() as http:
        yield http


async def signed_in(
    browser: Browser,
    stack: Stack,
    name: str,
    width: str = "desktop",
    page: Page | None = None,
    admin: bool = False,
) -> Page:
    page = page or await browser.new_page(viewport=WIDTHS[width])
    await page.goto(stack.gateway_url)
    await page.get_by_label("Name", exact=True).fill(name)
    if admin:
        await page.get_by_label("Admin", exact=True).check()
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    return page


# What holders() says once a coupon's one unit has gone from ann (released) to bo.
PASSED_FROM_ANN_TO_BO = [("ann", "released"), ("bo", "assigned")]


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


async def looked_at(page: Page, name: str) -> None:
    """`web-<name>-desktop.png` and `web-<name>-phone.png`; fails when the page is wider
    than a phone's screen or breaks an accessibility rule. The page's own width is kept."""
    own = page.viewport_size
    for width, size in WIDTHS.items():
        await page.set_viewport_size(size)
        await page.screenshot(path=artifact(f"web-{name}-{width}.png"), full_page=True)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} at {width} width is {overflow} px too wide"
    found = await _axe.run(page, options=AXE_RULES)
    assert found.violations_count == 0, f"{name}: {found.generate_report()}"
    if own is not None:
        await page.set_viewport_size(own)
