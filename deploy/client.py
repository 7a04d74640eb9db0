"""`coupons create|list|claim|poll|redeem`: the HTTP API from a terminal, against a
running stack, with readable lines by default and the API's own JSON with `--json`.

Exit status: 0 done (granted, applied, listed), 1 refused (a 409 with its reason),
2 bad input or no right (another 4xx), 3 not decided yet (a ticket to poll),
4 the service could not answer (5xx, 429 or no connection): try again later.
"""

import argparse
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.errors import CouponsError

DONE, REFUSED, BAD, PENDING, UNAVAILABLE = 0, 1, 2, 3, 4
TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.5


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


Ask = Callable[[argparse.Namespace], Reply]  # one request (or a poll), its reply


class Unreachable(CouponsError):
    """No answer from the service (no connection): exit status UNAVAILABLE, try again later."""

    retriable = True


def run(ask: Ask, args: argparse.Namespace) -> int:
    """One of the commands below (`create`, `listing`, …): its reply printed, and the exit
    status that says what it was."""
    try:
        reply = ask(args)
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(f"cannot reach the service: {error}") from error
    if args.json:
        print(json.dumps(reply.body, indent=2, ensure_ascii=False))
    else:
        print(describe(args.command, reply))
    return exit_status(reply)


# The arguments of each command, beside its --data-dir (cli/main.py's table adds that).


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("COUPONS_URL", "http://127.0.0.1:8080"),
                        help="the gateway (default $COUPONS_URL or the local stack)")  # fmt: skip
    parser.add_argument("--token", default=os.environ.get("COUPONS_TOKEN"),
                        help="a bearer token (default $COUPONS_TOKEN)")  # fmt: skip
    parser.add_argument("--as", dest="user", default=os.environ.get("USER", "someone"),
                        help="with no token: mint one for this user (local secret)")  # fmt: skip
    parser.add_argument("--admin", action="store_true", help="the minted token is an admin's")
    parser.add_argument("--json", action="store_true", help="print the API's JSON as it came")


def create_arguments(create: argparse.ArgumentParser) -> None:
    _common(create)
    create.add_argument("--code", required=True, help="the coupon's name, e.g. FREE-IPHONE")
    create.add_argument("--message", required=True, help="what people are offered")
    create.add_argument("--count", type=int, required=True, help="units to give")
    create.add_argument("--description", default="")
    create.add_argument("--start", default="now", help="RFC 3339 time, or now (default)")
    create.add_argument("--days", type=float, default=7.0, help="live this long (default 7)")
    create.add_argument("--hold-seconds", type=int, default=0,
                        help="a claim is held this long for confirmation (0: no hold)")  # fmt: skip
    create.add_argument("--no-daily-limit", action="store_true",
                        help="people may also get other coupons the same day")  # fmt: skip


def listing_arguments(listing: argparse.ArgumentParser) -> None:
    _common(listing)
    listing.add_argument("--live", action="store_true", help="only coupons live now")


def claim_arguments(claim: argparse.ArgumentParser) -> None:
    _common(claim)
    claim.add_argument("coupon", help="the coupon id")
    claim.add_argument("--for", dest="for_user", help="claim for this user (admin)")
    claim.add_argument("--wait", type=float, default=2.0, help="seconds to wait for a decision")
    claim.add_argument("--key", default=None, help="Idempotency-Key (default: a new one)")


def poll_arguments(poll: argparse.ArgumentParser) -> None:
    _common(poll)
    poll.add_argument("ticket", help="the ticket URL a claim gave (or the ticket alone)")
    poll.add_argument("--notifier", default=None, help="the notifier (default: gateway port+1)")
    poll.add_argument("--wait", type=float, default=0.0,
                      help="poll until decided, at most this many seconds")  # fmt: skip


def redeem_arguments(redeem: argparse.ArgumentParser) -> None:
    _common(redeem)
    redeem.add_argument("grant", help="the grant id")


def exit_status(reply: Reply) -> int:
    if reply.status == 202 or reply.body.get("status") == "pending":
        return PENDING
    if reply.status < 300:
        return REFUSED if reply.body.get("status") == "rejected" else DONE
    if reply.status == 409:
        return REFUSED
    if reply.status == 429 or reply.status >= 500:
        return UNAVAILABLE
    return BAD


def describe(command: str, reply: Reply) -> str:
    """One reply as a person reads it."""
    body = reply.body
    if reply.status == 409 and body.get("reason"):  # a business refusal: say which
        return _ticket_line({**body, "status": "rejected"}, None)
    if reply.status >= 400:
        reason = f" ({body['reason']})" if body.get("reason") else ""
        retry = reply.headers.get("Retry-After")
        later = f"; try again in {retry} s" if retry else ""
        title, detail = body.get("title", "error"), body.get("detail", "")
        return f"{reply.status} {title}{reason}: {detail}{later}"
    if command == "list":
        rows = [_coupon_line(c) for c in body["items"]]
        return "\n".join(rows) if rows else "no coupons"
    if command == "create":
        return "created " + _coupon_line(body)
    if command == "redeem":
        return f"{body['state']}: {body['code']} (grant {body['id']})"
    return _ticket_line(body, reply.headers.get("Location"))


def _coupon_line(coupon: dict[str, Any]) -> str:
    left = f"{coupon['remaining']}/{coupon['count']} left"
    return (
        f"{coupon['id']}  {coupon['code']:<16} {coupon['state']:<9} {left:<14} "
        f"{coupon['start_time']} → {coupon['expiry']}  {coupon['message']}"
    )


def _ticket_line(body: dict[str, Any], location: str | None) -> str:
    status = body.get("status")
    if status == "granted":
        grant = body["grant"]
        return f"granted: {grant['code']} ({grant['state']}, grant {grant['id']})"
    if status == "rejected":
        shown = body.get("detail") not in (None, "", body.get("reason"))
        detail = f": {body['detail']}" if shown else ""
        return f"rejected: {body.get('reason')}{detail}"
    where = location or body.get("ticket", "")
    position = f", position {body['position']}" if body.get("position") is not None else ""
    return f"pending{position}: coupons poll {where} --wait 30"


def create(args: argparse.Namespace) -> Reply:
    start = datetime.now(UTC) if args.start == "now" else datetime.fromisoformat(args.start)
    body = {
        "code": args.code,
        "message": args.message,
        "description": args.description,
        "start_time": start.isoformat(),
        "expiry": (start + timedelta(days=args.days)).isoformat(),
        "count": args.count,
        "hold_seconds": args.hold_seconds,
        "daily_limit": not args.no_daily_limit,
    }
    return _call(args, "POST", f"{args.url}/v1/coupons", body, {"Prefer": "wait=10"})


def listing(args: argparse.Namespace) -> Reply:
    query = "?live=true" if args.live else ""
    return _call(args, "GET", f"{args.url}/v1/coupons{query}")


def claim(args: argparse.Namespace) -> Reply:
    body = {"user_id": args.for_user} if args.for_user else {}
    headers = {"Prefer": f"wait={args.wait:g}", "Idempotency-Key": args.key or str(uuid.uuid4())}
    return _call(args, "POST", f"{args.url}/v1/coupons/{args.coupon}/claims", body, headers)


def poll(args: argparse.Namespace) -> Reply:
    url = args.ticket
    if "://" not in url:
        url = f"{args.notifier or _notifier_of(args.url)}/v1/tickets/{url}"
    deadline = time.monotonic() + args.wait
    while True:
        reply = _call(args, "GET", url)
        decided = reply.status != 200 or reply.body.get("status") != "pending"
        if decided or time.monotonic() >= deadline:
            return reply
        time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))


def redeem(args: argparse.Namespace) -> Reply:
    url = f"{args.url}/v1/grants/{args.grant}/redeem"
    return _call(args, "POST", url, {}, {"Prefer": "wait=10"})


def _notifier_of(gateway_url: str) -> str:
    """The local stack's notifier is on the gateway's port + 1."""
    scheme, _, rest = gateway_url.partition("://")
    host, _, port = rest.rstrip("/").rpartition(":")
    return f"{scheme}://{host}:{int(port) + 1}" if port.isdigit() else gateway_url


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    from deploy.dev import dev_secrets
    from runtime.auth import mint_token

    secret = os.environ.get("COUPONS_JWT_SECRET") or dev_secrets(args.data_dir)["jwt"]
    return mint_token(secret, args.user, admin=args.admin, ttl_s=600)


def _call(
    args: argparse.Namespace,
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {_token(args)}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return Reply(response.status, _json(response.read()), dict(response.headers))
    except urllib.error.HTTPError as error:  # a 4xx or 5xx answer is still an answer
        return Reply(error.code, _json(error.read()), dict(error.headers))


def _json(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        return {"title": "not JSON", "detail": raw[:200].decode(errors="replace")}
    return parsed if isinstance(parsed, dict) else {"items": parsed}
