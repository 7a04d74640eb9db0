"""`coupons report [COUPON_ID] [--out DIR] [--json]`: the story of one coupon, from the
command log, the edge counts (coupon.edge) and PostgreSQL; or, with no id, the last day's
coupons, one line each.

The story's arithmetic is deploy/story.py; here it is gathered, printed and drawn (a PNG:
claims arriving and decided per second, remaining units, the sell-out moment, winners'
latency). Nothing is written but the PNG.
"""

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from deploy.story import RETURNS_A_UNIT, Decided, LoggedClaim, Story
from runtime import kafka
from runtime.errors import CouponsError
from runtime.settings import Settings
from schemas.messages import Claim, decode_edge
from schemas.readmodel import dt_to_ms, status_from_row
from schemas.topics import Topics, partition_of

RECENT = """
SELECT id::text, code, count, issued, closed, start_time, expiry FROM coupons
WHERE start_time > now() - interval '1 day' OR created_at > now() - interval '1 day'
ORDER BY start_time
"""
# Each decision with the grants it made: a distribution is one decision making many.
DECIDED = """
SELECT d.request_id::text, d.outcome, d.reason, d.committed_at, g.source,
       coalesce(g.made, 0) AS made
FROM decisions d
LEFT JOIN (SELECT request_id, min(source) AS source, count(*) AS made FROM grants
           WHERE coupon_id = $1 GROUP BY request_id) g ON g.request_id = d.request_id
WHERE d.coupon_id = $1
"""
RETURNED = "SELECT log_offset FROM grant_events WHERE coupon_id = $1 AND after = ANY($2)"
NOW = """
SELECT (SELECT count(*) FROM claim_line WHERE coupon_id = $1) AS waiting,
       (SELECT count(*) FROM grants WHERE coupon_id = $1 AND state = 'held') AS holding
"""


class UnknownCoupon(CouponsError):
    pass


async def recent(settings: Settings) -> list[str]:
    """The last day's coupons, one line each."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        rows = await conn.fetch(RECENT)
    finally:
        await conn.close()
    return [
        f"{r['id']}  {r['code']:<16} {r['issued']:>7,}/{r['count']:<7,} issued  "
        f"{'closed' if r['closed'] else 'open':<6}  live {_time(dt_to_ms(r['start_time']))}"
        for r in rows
    ]


async def gather(settings: Settings, coupon_id: str) -> Story:
    """The story of one coupon, from PostgreSQL and its partition of the logs."""
    try:
        uuid.UUID(coupon_id)
    except ValueError:
        raise UnknownCoupon(f"{coupon_id!r} is not a coupon id (a UUID)") from None
    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM coupons WHERE id = $1", coupon_id)
        if row is None:
            raise UnknownCoupon(f"no coupon {coupon_id} in the database")
        status = status_from_row(row)
        decided = {
            r["request_id"]: Decided(
                r["request_id"],
                r["outcome"],
                r["reason"],
                dt_to_ms(r["committed_at"]),
                r["made"],
                r["source"],
            )
            for r in await conn.fetch(DECIDED, coupon_id)
        }
        returns = [r["log_offset"] for r in await conn.fetch(RETURNED, coupon_id, RETURNS_A_UNIT)]
        now = await conn.fetchrow(NOW, coupon_id)
    finally:
        await conn.close()
    story = Story(
        status.spec.code, status.spec.count, status.spec.start_ms, [], decided, returns,
        waiting=now["waiting"], holding=now["holding"],
    )  # fmt: skip
    await _read_logs(settings, coupon_id, story)
    return story


async def _read_logs(settings: Settings, coupon_id: str, story: Story) -> None:
    topics = Topics(settings.topic_prefix)
    partition = partition_of(coupon_id, settings.commands_partitions)
    async for record, command in kafka.read_commands(settings, only=partition):
        if isinstance(command, Claim) and command.coupon_id == coupon_id:
            story.claims.append(
                LoggedClaim(
                    record.offset, command.request_id, command.user_id, command.at_ms,
                    command.reply_to,
                )
            )  # fmt: skip
    edge: Counter[str] = Counter()
    async for records in kafka.read_to_end(settings, topics.edge, only=partition):
        for record in records:
            try:
                answers = decode_edge(record.value or b"")
            except (ValueError, TypeError, KeyError):
                continue
            if answers.coupon_id == coupon_id:
                edge.update(answers.reasons)
                first = answers.first_ms or answers.from_ms
                last = answers.last_ms or answers.to_ms - 1
                story.edge_spans.append((first, last, sum(answers.reasons.values())))
    story.edge = edge


def lines(summary: dict[str, Any], coupon_id: str) -> list[str]:
    """The printed summary."""
    go_live = summary["go_live_ms"]

    def after(ms: int | None) -> str:
        return "never" if ms is None else f"{_time(ms)} ({_signed(ms - go_live)} after go-live)"

    refused = " · ".join(f"{r} {n:,}" for r, n in summary["refused"].items()) or "none"
    fair = summary["fairness"]
    fairness = (
        f"verified over {fair['checked']:,} decided claims: grants went to the first "
        "eligible claims in log order"
        if fair["verified"]
        else f"NOT verified: {fair['counter_example']}"
    )
    skew = summary["clock_skew_ms"]
    return [
        f"{summary['code']} ({coupon_id}): {summary['count']:,} units",
        f"go-live            {_time(go_live)}",
        f"first claim        {after(summary['first_claim_ms'])}",
        f"sold out           {after(summary['sold_out_ms'])}",
        f"claims             {summary['claims']:,}: {summary['decided_by_allocator']:,} decided "
        f"by the allocator, {summary['answered_at_edge']:,} answered at the edge",
        f"granted            {summary['granted']:,}{_made_by(summary['granted_by'])}",
        f"refused            {refused}",
        f"winners' latency   p50 {_ms(summary['winners_latency_p50_ms'])} · "
        f"p99 {_ms(summary['winners_latency_p99_ms'])} (gateway's receipt → committed)",
        f"line and holds     {summary['waiting']:,} waiting in line, {summary['holding']:,} held",
        f"fairness           {fairness}",
        f"clock skew         receive times run up to {skew['largest_ms']} ms against log order "
        f"({skew['gateways']} gateway{'s' if skew['gateways'] != 1 else ''})",
    ]


def _made_by(granted_by: dict[str, int]) -> str:
    made = " · ".join(f"{how} {n:,}" for how, n in granted_by.items())
    return f" ({made})" if made else ""


def write_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)


def plot(story: Story, path: Path) -> Path:
    """Claims arriving and decided per second, remaining units with the sell-out moment,
    and winners' latency, on one time axis (seconds from go-live)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zero = story.go_live_ms
    ends = [c.at_ms for c in story.claims] + [d.at_ms for d in story.decided.values()]
    span_s = (max(ends, default=zero) - min([zero, *ends])) / 1000
    bin_s = 0.1 if span_s <= 10 else 1.0  # a burst is read in tenths of a second

    def bin_of(ms: int) -> float:
        return ((ms - zero) // int(bin_s * 1000)) * bin_s

    arrived: Counter[float] = Counter(bin_of(c.at_ms) for c in story.claims)
    for first, last, count in story.edge_spans:  # spread between the first and last answer
        bins = [bin_of(first + (last - first) * i // max(count - 1, 1)) for i in range(count)]
        arrived.update(bins)
    decided = Counter(bin_of(d.at_ms) for d in story.decided.values())
    granted = story.granted()
    made_ms = story.grants_ms()
    figure, (rates, units, latency) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for counted, label, shift in ((arrived, "claims arriving", 0.0),
                                  (decided, "decided by the allocator", bin_s / 2)):  # fmt: skip
        seconds = sorted(counted)
        rates.bar([t + shift for t in seconds], [counted[t] for t in seconds],
                  width=bin_s / 2, align="edge", label=label)  # fmt: skip
    rates.set_ylabel(f"per {bin_s:g} s")
    rates.legend()
    rates.set_title(f"{story.code}: {story.count:,} units")
    times = [(ms - zero) / 1000 for ms in made_ms]
    units.step([0.0, *times], [story.count - n for n in range(len(times) + 1)], where="post")
    units.set_ylabel("remaining units")
    sold_out = story.sold_out_ms()
    if sold_out is not None:
        for axes in (rates, units, latency):
            axes.axvline((sold_out - zero) / 1000, color="grey", linestyle="--")
        units.annotate("sold out", ((sold_out - zero) / 1000, 0), xytext=(5, 10),
                       textcoords="offset points")  # fmt: skip
    claims = {c.request_id: c for c in story.claims}
    won = [(d.at_ms - zero, d.at_ms - claims[d.request_id].at_ms)
           for d in granted if d.request_id in claims]  # fmt: skip
    latency.scatter([t / 1000 for t, _ in won], [ms for _, ms in won], s=6)
    latency.set_ylabel("winners' latency (ms)")
    latency.set_xlabel("seconds from go-live")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _signed(ms: int) -> str:
    return f"{ms / 1000:.3f} s" if ms >= 0 else f"-{-ms / 1000:.3f} s"


def _ms(value: int | None) -> str:
    return "–" if value is None else f"{value:,} ms"
