"""The analysts' commands find the local stack by its settings file, and say what is wrong
in one line with a non-zero exit, never a traceback, when they cannot."""

import asyncio
import json
import shutil
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.artifacts import artifact
from tests.support.client import POLL_INTERVAL_S, at_the_edge, claim, create_coupon, post
from tests.support.stack import Stack
from tests.support.terminal import coupons_in, stack_folder

pytestmark = [pytest.mark.integration, pytest.mark.shares_stack]

EDGE_COUNTS_WITHIN_S = 10


def nothing_listening() -> str:
    """An address on this machine where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def one_line(status: int, err: str) -> str:
    assert status != 0 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


async def test_a_second_terminal_in_the_project_folder_finds_the_stack(
    stack: Stack, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 3)
        for person in ("ann", "bo", "cy"):
            await claim(session, stack, coupon["id"], person)
    here = stack_folder(stack, tmp_path)
    replayed, proved, _ = coupons_in(here, "replay")
    exported, rows, _ = coupons_in(here, "export", "decisions", "--format", "csv")
    listed, listing, _ = coupons_in(here, "list", "--as", "ann")
    asked, what_if, _ = coupons_in(here, "replay", "--what-if", coupon["id"], "count=1")
    print(f"\n{what_if.strip()}")
    assert replayed == 0 and ", 0 mismatch" in proved, proved
    assert exported == 0 and rows.count(coupon["id"]) >= 4  # created, and three grants
    assert listed == 0 and coupon["id"] in listing
    assert asked == 0 and "had count=1 (was 3)" in what_if, what_if
    assert "grants     3 → 1" in what_if and "would lose 2: bo, cy" in what_if
    assert "nothing was written" in what_if


async def test_each_thing_that_can_be_wrong_is_said_in_one_line(
    stack: Stack, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 2, daily_limit=False)
        for person in ("bo", "cy"):
            await claim(session, stack, coupon["id"], person)
    mistyped = stack.env["COUPONS_TOPIC_PREFIX"].replace("t_", "t-", 1)
    folders = {
        name: stack_folder(stack, tmp_path / name, **changed)
        for name, changed in {
            "prefix": {"COUPONS_TOPIC_PREFIX": mistyped},
            "broker": {"KAFKA_BOOTSTRAP_SERVERS": nothing_listening()},
            "database": {"DATABASE_URL": f"postgresql://postgres@{nothing_listening()}/x"},
            "secret": {"COUPONS_CODE_SECRET": "not-the-allocators-secret"},
        }.items()
    }
    (tmp_path / "empty").mkdir()
    said = {
        "no settings": one_line(*coupons_in(tmp_path / "empty", "replay")[::2]),
        "prefix": one_line(*coupons_in(folders["prefix"], "replay")[::2]),
        "broker": one_line(*coupons_in(folders["broker"], "export", "commands")[::2]),
        "database": one_line(*coupons_in(folders["database"], "replay")[::2]),
    }
    wrong_secret, out, err = coupons_in(folders["secret"], "replay")
    said["secret"] = one_line(wrong_secret, err)
    print("\n" + "\n".join(f"{name}: {line}" for name, line in said.items()))
    assert said["no settings"].startswith("coupons: missing environment variables")
    assert "run `coupons dev` in this folder" in said["no settings"]
    assert f"no topic {mistyped}coupon.commands" in said["prefix"]
    nearest = said["prefix"].split("nearest first: ", 1)[1]
    assert nearest.startswith(repr(stack.env["COUPONS_TOPIC_PREFIX"]))  # the one meant
    assert said["broker"].startswith("coupons: cannot reach the broker at 127.0.0.1:")
    assert "settings from" in said["broker"] and "stack.env" in said["broker"]
    assert said["database"].startswith("coupons: cannot reach PostgreSQL at 127.0.0.1:")
    assert "code secret (COUPONS_CODE_SECRET)" in said["secret"] and "MISMATCH" in out


async def test_a_burst_has_its_report(stack: Stack, tmp_path: Path) -> None:
    count, people = 25, 300
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, count, code="REPORTED")
        answers = await asyncio.gather(
            *(claim(session, stack, coupon["id"], f"r{i}") for i in range(people))
        )
    at_edge = len(await at_the_edge(stack, answers))
    here = stack_folder(stack, tmp_path)
    deadline = time.monotonic() + EDGE_COUNTS_WITHIN_S
    while True:  # each gateway appends its edge counts once a second
        status, out, err = coupons_in(here, "report", coupon["id"], "--json", "--out", "plots")
        assert status == 0, err
        summary = json.loads(out)
        if summary["answered_at_edge"] >= at_edge or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_INTERVAL_S)
    printed, text, _ = coupons_in(here, "report", coupon["id"], "--out", "plots")
    listed, listing, _ = coupons_in(here, "report")
    shot = artifact("report.png")
    shutil.copy(summary["png"] if Path(summary["png"]).is_absolute() else here / summary["png"],
                shot)  # fmt: skip
    print(f"\n{text.strip()}\n{listing.strip()}\nplot: {shot.resolve()}")
    assert (summary["granted"], summary["claims"], summary["answered_at_edge"]) == (
        count, people, at_edge
    )  # fmt: skip
    assert summary["decided_by_allocator"] == people - at_edge
    assert summary["refused"] == {"sold_out": people - count}
    assert summary["fairness"]["verified"] is True and summary["sold_out_ms"] is not None
    assert summary["winners_latency_p50_ms"] is not None
    assert printed == 0 and "fairness           verified" in text and "REPORTED" in text
    assert listed == 0 and f"{coupon['id']}  REPORTED" in listing
    assert shot.stat().st_size > 10_000


async def test_a_coupon_filled_by_distribution_reports_every_grant(
    stack: Stack, tmp_path: Path
) -> None:
    """Issue 23: `coupons report` said "granted 0" for a coupon filled by a distribution: it
    counted claims' decisions, and a distribution is one decision making many grants."""
    ops = stack.token("ops", admin=True)
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 6, daily_limit=False, code="SPREAD")
        base = f"{stack.gateway_url}/v1/coupons/{coupon['id']}"
        wait = {"Prefer": "wait=10"}
        spread = await post(session, f"{base}/distributions", ops,
                            {"users": ["d1", "d2", "d3", "d4"]}, wait)  # fmt: skip
        assigned = await post(session, f"{base}/assignments", ops,
                              {"user_id": "a1", "code": "BY-HAND-1"}, wait)  # fmt: skip
        claimed = await claim(session, stack, coupon["id"], "c1")
    assert (spread.status, assigned.status, claimed.status) == (201, 201, 201)
    here = stack_folder(stack, tmp_path)
    status, out, err = coupons_in(here, "report", coupon["id"], "--json", "--out", "plots")
    printed, text, _ = coupons_in(here, "report", coupon["id"], "--out", "plots")
    print(f"\n{text.strip()}")
    assert status == 0, err
    summary = json.loads(out)
    assert summary["granted"] == 6
    assert summary["granted_by"] == {"claims": 1, "distribution": 4, "assignment": 1}
    assert summary["sold_out_ms"] is not None
    assert printed == 0
    assert "granted            6 (claims 1 · distribution 4 · assignment 1)" in text


async def test_users_import_refuses_bad_ids_broken_csv_and_files_past_its_bounds(
    stack: Stack, tmp_path: Path
) -> None:
    """Issue 23: the users import took control characters as ids, stored an unterminated
    quote's run to the end of the file, and had no size bound. Each is one line and a
    non-zero exit, and nothing is imported."""
    from deploy.users import USERS_IMPORT_BYTES_MAX

    here = stack_folder(stack, tmp_path)
    files = {
        "control": "id,display_name\nann,Ann\nbo\x07b,Bo\n",
        "blank": "id,display_name\nann,Ann\n   ,Nobody\n",
        "open quote": 'id,display_name\nann,"Ann\nbo,Bo\n',
        "newline": 'id,display_name\nann,"Ann\nLee"\nbo,Bo\n',
        "rows": "id,display_name\nann,Ann\nbo,Bo\ncy,Cy\n",
        "bytes": "id,display_name\nann,Ann\n",
    }
    for name, text in files.items():
        (tmp_path / f"{name}.csv").write_text(text, encoding="utf-8")
    with (tmp_path / "huge.csv").open("w", encoding="utf-8") as huge:
        huge.write("id,display_name\nann,Ann\n")
        huge.truncate(USERS_IMPORT_BYTES_MAX + 1)  # sparse: nothing is written to disk
    flags = {"rows": ["--rows-max", "2"], "bytes": ["--bytes-max", "20"]}
    said = {
        name: one_line(*coupons_in(here, "users", "import", str(tmp_path / f"{name}.csv"),
                                   *flags.get(name, []))[::2])
        for name in [*files, "huge"]
    }  # fmt: skip
    print("".join(f"\n{name}: {line}" for name, line in said.items()))
    imported = await stack.fetchval("SELECT count(*) FROM users WHERE id IN ('ann', 'bo', 'cy')")
    assert ":3: id holds a control character (U+0007)" in said["control"]
    assert ":3: id is blank" in said["blank"]
    assert said["open quote"].endswith(":2: a quote opened on this line is never closed")
    assert said["newline"].endswith(":2: a quoted field holds a line break")
    assert "more than 2 rows" in said["rows"] and "--rows-max" in said["rows"]
    assert "more than 20 bytes" in said["bytes"] and "--bytes-max" in said["bytes"]
    assert f"more than {USERS_IMPORT_BYTES_MAX:,} bytes" in said["huge"]
    assert imported == 0
