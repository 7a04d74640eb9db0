"""`coupons create|list|claim|poll|redeem` against the running stack, as a terminal user
runs them: readable lines, `--json`, and exit statuses a script can branch on."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.support.stack import SECRET, Stack

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]

RUN_TIMEOUT_S = 60


def coupons(stack: Stack, *args: str, url: str | None = None) -> tuple[int, str]:
    env = {**os.environ, "COUPONS_JWT_SECRET": SECRET}
    argv = [sys.executable, "-m", "cli", *args, "--url", url or stack.gateway_url]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return done.returncode, done.stdout + done.stderr


def test_a_coupon_from_creation_to_redemption_on_the_command_line(stack: Stack) -> None:
    code = f"CLI-{uuid.uuid4().hex[:6].upper()}"
    create = ("create", "--code", code, "--message", "one for the terminal", "--count", "1")
    created, out = coupons(stack, *create, "--no-daily-limit", "--as", "ops", "--admin", "--json")
    assert created == 0, out
    coupon = json.loads(out)
    listed, listing = coupons(stack, "list", "--live", "--as", "anyone")
    pending, waiting = coupons(stack, "claim", coupon["id"], "--wait", "0", "--as", "alice")
    ticket_url = waiting.split("coupons poll ", 1)[1].split()[0]
    polled, decided = coupons(stack, "poll", ticket_url, "--wait", "20", "--json", "--as", "alice")
    grant = json.loads(decided)["grant"]
    refused, sold_out = coupons(stack, "claim", coupon["id"], "--as", "bob")
    redeemed, used = coupons(stack, "redeem", grant["id"], "--as", "alice")
    again, twice = coupons(stack, "redeem", grant["id"], "--as", "alice")
    print(f"\n{listing.strip()}\n{waiting.strip()}\n{sold_out.strip()}\n{used.strip()}")
    assert (coupon["code"], coupon["remaining"], coupon["state"]) == (code, 1, "live")
    assert listed == 0 and f"{coupon['id']}  {code}" in listing and "1/1 left" in listing
    assert pending == 3 and waiting.startswith("pending")
    assert (polled, json.loads(decided)["status"], grant["user_id"]) == (0, "granted", "alice")
    assert refused == 1 and sold_out.startswith("rejected: sold_out")
    assert (redeemed, used.strip()) == (0, f"redeemed: {grant['code']} (grant {grant['id']})")
    assert again == 1 and twice.startswith("rejected: already_redeemed")


def test_the_exit_status_tells_bad_input_from_an_unreachable_service(stack: Stack) -> None:
    not_admin, forbidden = coupons(stack, "create", "--code", "X", "--message", "m",
                                   "--count", "1", "--as", "mallory")  # fmt: skip
    unknown, missing = coupons(stack, "claim", "not-a-coupon", "--as", "alice")
    gone, unreachable = coupons(stack, "list", url="http://127.0.0.1:9")  # discard port
    assert (not_admin, unknown) == (2, 2), forbidden + missing
    assert forbidden.startswith("403") and missing.startswith("404")
    assert gone == 4 and "cannot reach the service" in unreachable
