"""`coupons export`: the command and decision logs as JSON Lines, CSV and Parquet, row for
row what the log holds and the database decided."""

import csv
import json
import tempfile
from pathlib import Path

import aiohttp
import pyarrow.parquet as pq
import pytest

from tests.support.client import at_the_edge, claim, create_coupon, step
from tests.support.stack import Stack
from tests.support.terminal import coupons_in, stack_folder

pytestmark = pytest.mark.integration


def export(stack: Stack, *args: str) -> tuple[int, str, str]:
    """`coupons export ARGS` in a folder where it finds the stack by its settings file."""
    with tempfile.TemporaryDirectory() as folder:
        return coupons_in(stack_folder(stack, Path(folder)), "export", *args)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


async def test_both_logs_in_each_format(stack: Stack, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 2, daily_limit=False)
        answers = [await claim(session, stack, coupon["id"], f"e{i}") for i in range(4)]
    async with stack.connection() as conn:
        stored = {r["request_id"]: r["outcome"] for r in await conn.fetch(
            "SELECT request_id::text, outcome FROM decisions")}  # fmt: skip
    commands_status, jsonl, commands_said = export(stack, "commands")
    decisions_status, _, decisions_said = export(
        stack, "decisions", "--format", "csv", "--out", str(tmp_path / "d.csv")
    )
    parquet_status, _, _ = export(
        stack, "decisions", "--format", "parquet", "--out", str(tmp_path / "d.parquet")
    )
    none_status, none_out, _ = export(stack, "commands", "--until", "2000-01-01T00:00:00Z")
    commands = [json.loads(line) for line in jsonl.splitlines()]
    rows = read_csv(tmp_path / "d.csv")
    table = pq.read_table(tmp_path / "d.parquet").to_pylist()
    print(f"\n{commands_said.strip()}\n{decisions_said.strip()}")
    assert (commands_status, decisions_status, parquet_status, none_status) == (0, 0, 0, 0)
    kinds = [c["kind"] for c in commands]
    decided = [a for a in answers if a.status in (201, 409)]
    logged = len(decided) - len(await at_the_edge(stack, decided))
    assert kinds.count("create_coupon") == 1 and kinds.count("claim") == logged
    assert all(c["message"]["request_id"] == c["request_id"] for c in commands)
    assert {r["request_id"]: r["outcome"] for r in rows} == stored
    assert [(r["request_id"], r["outcome"]) for r in table] == [
        (r["request_id"], r["outcome"]) for r in rows
    ]
    assert {r["outcome"] for r in rows} >= {"created", "granted"}
    assert none_out == "" and f"{len(commands)} commands records written" in commands_said


async def test_the_grants_and_their_audit_trail_in_each_format(
    stack: Stack, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 2, daily_limit=False)
        granted = [await claim(session, stack, coupon["id"], f"g{i}") for i in range(3)]
        grant = granted[0].body["grant"]
        await step(session, stack, grant["id"], "redeem", grant["user_id"])
    stored = await stack.fetch("SELECT id::text, state FROM grants ORDER BY granted_at, id")
    trail = await stack.fetch("SELECT grant_id::text, after FROM grant_events ORDER BY id")
    grants_status, grants_jsonl, _ = export(stack, "grants")
    events_status, _, events_said = export(
        stack, "events", "--format", "csv", "--out", str(tmp_path / "e.csv")
    )
    parquet_status, _, _ = export(
        stack, "grants", "--format", "parquet", "--out", str(tmp_path / "g.parquet")
    )
    grants = [json.loads(line) for line in grants_jsonl.splitlines()]
    events = read_csv(tmp_path / "e.csv")
    table = pq.read_table(tmp_path / "g.parquet").to_pylist()
    print(f"\n{events_said.strip()}\n{grants[0]}")
    assert (grants_status, events_status, parquet_status) == (0, 0, 0)
    assert [(g["id"], g["state"]) for g in grants] == [(r["id"], r["state"]) for r in stored]
    assert [(e["grant_id"], e["after"]) for e in events] == [tuple(r) for r in trail]
    assert ("redeemed" in {e["after"] for e in events}) and len(stored) == 2
    assert [g["id"] for g in table] == [g["id"] for g in grants]
    assert isinstance(table[0]["granted_at_ms"], int) and grants[0]["coupon_id"] == coupon["id"]
