"""The web app's loops have bounds (gateway/web/), in a real browser against the real stack:
a claim with no answer is sent again with the same key a few times, slower and slower,
then the person is told in words and may try again; a place in line is polled no faster
than the notifier's Retry-After, a bounded number of times, then kept in words until news
comes on the person's own stream; that stream is retried with backoff and a bound too, is
followed once per sign-in, and is stopped, with nothing sent for nobody, once the sign-in
has ended or the person signed out. These pages shorten the backoff through
window.COUPONS_BACKOFF (gateway/web/common.js), so that a bound is reached in seconds."""

import json
import re
import time
from collections.abc import Callable, Sized

import aiohttp
import pytest
from playwright.async_api import Browser, Locator, Page, Request, Route, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from runtime.auth import mint_token
from tests.support.client import create_coupon, holders, until
from tests.support.stack import SECRET, Stack
from tests.support.webapp import (
    PASSED_FROM_ANN_TO_BO,
    SHOWN_WITHIN_MS,
    WIDTHS,
    looked_at,
    signed_in,
)

# Each loop is checked against the times its backoff allows: with nothing beside (`alone`).
pytestmark = [pytest.mark.integration, pytest.mark.shares_stack, pytest.mark.alone]

BACKOFF = {"first_ms": 100, "cap_ms": 800, "attempts_max": 5}
QUIET_MS = 2 * BACKOFF["cap_ms"] + 500  # longer than any wait between two tries
STREAMS_SETTLE_S = 10.0
FOLLOW = "/v1/users/me/events"
NO_TOKEN = ("Bearer null", "Bearer undefined")
# ann comes back to the page with yesterday's token (kept as the app keeps it: signin.js).
RETURNING = """(token) => { localStorage.setItem("token", token);
    localStorage.setItem("user", "ann"); localStorage.setItem("name", "ann"); }"""


async def shortened(browser: Browser) -> Page:
    """A page whose loops back off from 100 ms to 800 ms and give up after 5 tries."""
    page = await browser.new_page(viewport=WIDTHS["desktop"])
    await page.add_init_script(f"window.COUPONS_BACKOFF = {json.dumps(BACKOFF)};")
    return page


async def next_request(
    page: Page, matches: Callable[[Request], bool], within_ms: int = QUIET_MS
) -> Request | None:
    """The next request of the page that `matches`, or None if none comes within_ms."""
    try:
        return await page.wait_for_event("request", matches, timeout=within_ms)
    except PlaywrightTimeout:
        return None


async def told(status: Locator, words: str, tries: Sized) -> None:
    """The page says `words` (a loop that gave up); else fail with how often it asked."""
    began = time.monotonic()
    try:
        await expect(status).to_contain_text(words, timeout=SHOWN_WITHIN_MS)
    except AssertionError:
        said = " ".join(await status.all_inner_texts())  # none: no such element
        pytest.fail(f"{len(tries)} tries in {time.monotonic() - began:.1f} s and still no "
                    f"{words!r}; the page says {said!r}")  # fmt: skip


def gaps_s(times: list[float]) -> list[float]:
    return [round(later - earlier, 3) for earlier, later in zip(times, times[1:], strict=False)]


def slower_and_slower(gaps: list[float]) -> bool:
    """Each wait at least the least its backoff allows (half its doubled delay; the time a
    try takes only adds to it), and the last at least twice the first."""
    doubled = [min(BACKOFF["cap_ms"], BACKOFF["first_ms"] * 2**n) for n in range(len(gaps))]
    floors = all(gap >= 0.95 * delay / 2000 for gap, delay in zip(gaps, doubled, strict=True))
    return floors and gaps[-1] >= 2 * gaps[0]


def for_nobody(request: Request) -> bool:
    """A request of the person's own sent without their token (or with `Bearer null`)."""
    public = ("/v1/dev/token", "/v1/events?", "/v1/tickets/")
    if "/v1/" not in request.url or any(path in request.url for path in public):
        return False
    return request.headers.get("authorization", NO_TOKEN[0]) in NO_TOKEN


def seen(request: Request) -> str:
    return f"{request.method} {request.url}: {request.headers.get('authorization', 'no token')}"


def asked_at(page: Page, path: str) -> list[float]:
    """When the page asks for `path`, from now on."""
    times: list[float] = []
    page.on("request", lambda r: times.append(time.monotonic()) if path in r.url else None)
    return times


async def streams_open(http: aiohttp.ClientSession, stack: Stack) -> int:
    """People's live streams open at the notifier (its gauge)."""
    assert stack.notifier
    async with http.get(f"{stack.notifier.url}/metrics") as response:
        text = await response.text()
    found = re.search(r"^coupons_notifier_streams_open (\S+)$", text, re.M)
    return int(float(found[1])) if found else 0


async def until_streams_open(http: aiohttp.ClientSession, stack: Stack, count: int) -> None:
    """A closed stream is noticed by the notifier within half a second (notifier/sse.py)."""

    async def settled() -> bool:
        return await streams_open(http, stack) == count

    await until(settled, STREAMS_SETTLE_S, f"not {count} streams open at the notifier")


async def test_a_claim_with_no_answer_is_sent_again_slower_and_slower_then_said_in_words(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    coupon = await create_coupon(http, stack, 1, daily_limit=False, code="NOANSWER")
    page = await signed_in(browser, stack, "ann", page=await shortened(browser))
    card = page.get_by_role("listitem", name="NOANSWER", exact=True)
    sent: list[tuple[float, str]] = []  # when, and with which Idempotency-Key
    network = {"up": False}

    async def no_answer(route: Route) -> None:
        sent.append((time.monotonic(), route.request.headers["idempotency-key"]))
        if network["up"]:
            return await route.continue_()
        await route.abort()  # no answer at all: the claim may or may not have arrived

    await page.route("**/claims", no_answer)
    await card.get_by_role("button", name="Claim").click()
    said = card.get_by_role("status")
    await told(said, "Your claim is kept", sent)
    more = await next_request(page, lambda r: r.url.endswith("/claims"))
    gaps = gaps_s([when for when, _ in sent])
    assert more is None and len(sent) == BACKOFF["attempts_max"], gaps
    assert slower_and_slower(gaps), gaps
    await looked_at(page, "claim-no-answer")
    network["up"] = True
    await card.get_by_role("button", name="Try again").click()
    await expect(said).to_contain_text("Granted: ", timeout=SHOWN_WITHIN_MS)
    assert len(sent) == BACKOFF["attempts_max"] + 1
    assert {key for _, key in sent} == {sent[0][1]}  # one claim, named by one key throughout
    assert await holders(stack, coupon["id"]) == [("ann", "assigned")]


async def test_a_place_in_line_is_polled_no_faster_than_asked_then_kept_until_news(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    coupon = await create_coupon(http, stack, 1, daily_limit=False, code="LINE", hold_seconds=60)
    ann = await signed_in(browser, stack, "ann")
    bo = await signed_in(browser, stack, "bo", page=await shortened(browser))
    ann_card = ann.get_by_role("listitem", name="LINE", exact=True)
    bo_card = bo.get_by_role("listitem", name="LINE", exact=True)
    await ann_card.get_by_role("button", name="Claim").click()
    await expect(ann_card.get_by_role("status")).to_contain_text("Held for you")
    polls = asked_at(bo, "/v1/tickets/")
    await bo_card.get_by_role("button", name="Claim").click()
    said = bo_card.get_by_role("status")
    await expect(said).to_contain_text("place 1 in line")
    await told(said, "keep your place", polls)
    more = await next_request(bo, lambda r: "/v1/tickets/" in r.url)
    gaps = gaps_s(polls)
    # The claim's own answer (202) was the first of the tries; each said Retry-After: 1.
    assert more is None and len(polls) == BACKOFF["attempts_max"] - 1, gaps
    assert min(gaps) >= 0.95, gaps
    await expect(said).to_contain_text("place 1 in line")
    await looked_at(bo, "line-kept")
    # ann lets it go: the unit passes to bo, and his own stream tells his page at once.
    await ann_card.get_by_role("button", name="Cancel").click()
    confirm = bo_card.get_by_role("button", name="Confirm")
    await expect(confirm).to_be_visible(timeout=SHOWN_WITHIN_MS)
    await confirm.click()
    await expect(said).to_contain_text("Granted: ", timeout=SHOWN_WITHIN_MS)
    assert await holders(stack, coupon["id"]) == PASSED_FROM_ANN_TO_BO


async def test_the_own_stream_is_retried_slower_and_slower_then_said_in_words(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    page = await shortened(browser)
    tries: list[float] = []
    network = {"up": False}

    async def dropped(route: Route) -> None:
        tries.append(time.monotonic())
        await (route.continue_() if network["up"] else route.abort())

    await page.route(f"**{FOLLOW}", dropped)
    await signed_in(browser, stack, "ann", page=page)
    said = page.locator("#live-said")
    await told(said, "Live updates have stopped", tries)
    more = await next_request(page, lambda r: FOLLOW in r.url)
    gaps = gaps_s(tries)
    assert more is None and len(tries) == BACKOFF["attempts_max"], gaps
    assert slower_and_slower(gaps), gaps
    await looked_at(page, "live-stopped")
    network["up"] = True
    async with page.expect_response(lambda r: FOLLOW in r.url and r.status == 200):
        await page.get_by_role("button", name="Reconnect").click()
    await expect(said).to_have_text("")
    await until_streams_open(http, stack, 1)


async def test_a_sign_in_that_ended_stops_the_own_stream_and_signing_in_again_follows_once(
    stack: Stack, http: aiohttp.ClientSession, browser: Browser
) -> None:
    page = await shortened(browser)
    await page.goto(stack.gateway_url)
    await page.evaluate(RETURNING, mint_token(SECRET, "ann", ttl_s=-3600))  # refused
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request))
    await page.reload()
    await expect(page.get_by_text("Your sign-in has ended: sign in again.")).to_be_visible()
    later = await next_request(page, for_nobody)
    unsigned = [seen(r) for r in sent if for_nobody(r)]
    assert later is None and not unsigned, f"{len(unsigned)} sent for nobody: {unsigned}"

    # Signing in again, by a quick double click: one sign-in, one stream.
    before = len(sent)
    await page.get_by_label("Name", exact=True).fill("ann")
    async with page.expect_response(lambda r: FOLLOW in r.url and r.status == 200):
        await page.get_by_role("button", name="Sign in").dblclick()
    await expect(page.get_by_text("Signed in as ann")).to_be_visible()
    await next_request(page, lambda r: FOLLOW in r.url)
    followed = [r for r in sent[before:] if FOLLOW in r.url]
    signed = [r for r in sent[before:] if r.url.endswith("/v1/dev/token")]
    open_now = await streams_open(http, stack)
    assert (len(signed), len(followed), open_now) == (1, 1, 1), (
        f"{len(signed)} sign-ins, {len(followed)} stream requests, {open_now} streams open"
    )

    # Signing out: the stream closes, and nothing more is asked for ann.
    before = len(sent)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    await until_streams_open(http, stack, 0)
    later = await next_request(page, lambda r: "/v1/" in r.url)
    asked = [r.url for r in sent[before:] if "/v1/" in r.url]
    assert later is None and not asked, asked
