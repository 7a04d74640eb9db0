"""`coupons export`: the command and decision logs as JSON Lines, CSV and Parquet, row for
row what the log holds and the database decided."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pyarrow.parquet as pq
import pytest

from tests.support.client import claim, create_coupon
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 120


def export(stack: Stack, *args: str) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "deploy.cli", "export", *args]
    done = subprocess.run(argv, env={**os.environ, **stack.env}, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


async def test_both_logs_in_each_format(stack: Stack, tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 2, daily_limit=False)
        answers = [await claim(session, stack, coupon["id"], f"e{i}") for i in range(4)]
    conn = await stack.db()
    try:
        stored = {r["request_id"]: r["outcome"] for r in await conn.fetch(
            "SELECT request_id::text, outcome FROM decisions")}  # fmt: skip
    finally:
        await conn.close()
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
    assert kinds.count("create_coupon") == 1 and kinds.count("claim") == sum(
        1 for a in answers if a.status in (201, 409) and "ticket" in a.body
    )
    assert all(c["message"]["request_id"] == c["request_id"] for c in commands)
    assert {r["request_id"]: r["outcome"] for r in rows} == stored
    assert [(r["request_id"], r["outcome"]) for r in table] == [
        (r["request_id"], r["outcome"]) for r in rows
    ]
    assert {r["outcome"] for r in rows} >= {"created", "granted"}
    assert none_out == "" and f"{len(commands)} commands records written" in commands_said
