"""Bounded work (issue 23, cases 1 and 3): no legal command stalls a partition, and one
partition's big batch holds no other. Canary claims on every partition are sent all the
while a big command is applied. Before the bounds, such commands held every partition for
9.2 to 182 s; a canary now may take at most half the shortest of those holds longer than the
slowest of a round sent before the command. Issue 23's target, 2 s, is what the report line
shows against: met on a quiet machine (0.1-1.3 s here), not when `make test` runs its two
halves side by side on two cores (2.4 and 3.2 s seen), so not asserted as a time."""

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from schemas.messages import COMMAND_BYTES_MAX
from schemas.storable import GRANTS_PER_COMMAND_MAX
from tests.support.client import (
    Answer,
    claim,
    coupons_on_every_partition,
    create_coupon,
    post,
    until,
)
from tests.support.stack import Stack

# The canaries time claims beside a big command: with nothing else running (`alone`).
pytestmark = [pytest.mark.integration, pytest.mark.alone]

CANARY_S_TARGET = 2.0  # issue 23's target for a claim beside a big command (a quiet machine)
HELD_S_BEFORE = 9.2  # the shortest hold of every partition a big command made before
CANARY_ADDED_S_MAX = HELD_S_BEFORE / 2  # what a big command may add to a canary, asserted
CANARY_EVERY_S = 0.25
REVOKED_WITHIN_S = 60.0
REVOKED_PARTS = 10  # a coupon of 50,000 grants, made by distributions at the grant bound


class Canaries:
    """Claims on one coupon of each partition, a round every CANARY_EVERY_S, until
    stopped: how long each took to be decided."""

    def __init__(self, stack: Stack, session: aiohttp.ClientSession, coupons: list[str]) -> None:
        self.stack, self.session, self.coupons = stack, session, coupons
        self.answers: list[Answer] = []
        self.stopped = asyncio.Event()
        self.quiet = 0.0  # the slowest of a round with nothing big under way

    async def quiet_round(self) -> None:
        """Two rounds with nothing big under way; the second's slowest is the pace the big
        command is measured against (the first warms each partition's path)."""
        for round_ in ("quiet-a", "quiet-b"):
            sent = [claim(self.session, self.stack, coupon, f"canary-{round_}-{index}")
                    for index, coupon in enumerate(self.coupons)]  # fmt: skip
            answers = await asyncio.gather(*sent)
            assert {a.status for a in answers} == {201}, [a.body for a in answers][:3]
            self.quiet = max(a.seconds for a in answers)

    async def run(self) -> None:
        sent: list[asyncio.Task[Answer]] = []
        round_ = 0
        while not self.stopped.is_set():
            for index, coupon in enumerate(self.coupons):
                who = f"canary-{round_}-{index}"
                sent.append(asyncio.create_task(claim(self.session, self.stack, coupon, who)))
            round_ += 1
            try:
                await asyncio.wait_for(self.stopped.wait(), CANARY_EVERY_S)
            except TimeoutError:
                pass
        self.answers = list(await asyncio.gather(*sent))

    def slowest(self) -> float:
        assert {a.status for a in self.answers} == {201}, [a.body for a in self.answers][:3]
        return max(a.seconds for a in self.answers)

    def added(self) -> float:
        """How much longer than the quiet round's slowest the slowest canary took."""
        return self.slowest() - self.quiet


async def _beside_canaries(stack: Stack, session: aiohttp.ClientSession, big: Any) -> Any:
    coupons = await coupons_on_every_partition(session, stack, 10_000)
    canaries = Canaries(stack, session, coupons)
    await canaries.quiet_round()
    running = asyncio.create_task(canaries.run())
    await asyncio.sleep(CANARY_EVERY_S)  # a round or two before the big command
    try:
        result = await big
    finally:
        await asyncio.sleep(CANARY_EVERY_S * 2)  # and a round or two after it was answered
        canaries.stopped.set()
        await running
    return result, canaries


def _distribute(
    stack: Stack, session: aiohttp.ClientSession, coupon_id: str, body: dict[str, Any]
) -> Any:
    url = f"{stack.gateway_url}/v1/coupons/{coupon_id}/distributions"
    return post(session, url, stack.token("admin", True), body, {"Prefer": "wait=10"})


async def test_a_distribution_past_the_grant_bound_is_refused_at_once(stack: Stack) -> None:
    """The issue's command: 5,000 people x 200 on a coupon of 10^7 (a million grants) kept
    a partition retrying for ever; a 100,000-grant one held every partition for 10 s."""
    async with aiohttp.ClientSession() as session:
        coupon = await create_coupon(session, stack, 10_000_000, per_user_limit=1_000)
        people = [f"p{i}" for i in range(5_000)]

        async def both() -> list[Answer]:
            million = _distribute(
                stack,
                session,
                coupon["id"],
                {"users": people, "strategy": "equal", "per_user": 200},
            )
            hundred_k = _distribute(
                stack, session, coupon["id"], {"users": people, "strategy": "equal", "per_user": 20}
            )
            return list(await asyncio.gather(million, hundred_k))  # fmt: skip

        answers, canaries = await _beside_canaries(stack, session, both())
    _report("past the grant bound", answers, canaries)
    for answer in answers:
        assert answer.status == 400, answer.body
        assert f"at most {GRANTS_PER_COMMAND_MAX} grants" in answer.body["detail"]
    assert await stack.fetchval("SELECT count(*) FROM grants WHERE coupon_id = $1",
                                coupon["id"]) == 0  # fmt: skip
    assert canaries.added() < CANARY_ADDED_S_MAX, (canaries.slowest(), canaries.quiet)


async def test_commands_past_the_byte_bound_are_refused_at_once(stack: Stack) -> None:
    """Ids of U+0001, each escaped to 6 bytes, made distributions of 6 MB that ten at once
    held every partition for 9 s (and that Apache Kafka would refuse); ids of 199
    characters, one of 1 MB. Now the first are refused as ids, the second as a command
    larger than COMMAND_BYTES_MAX: at once, and nothing is granted."""
    async with aiohttp.ClientSession() as session:
        admin = {"Authorization": f"Bearer {stack.token('admin', True)}"}
        escaped = "user_id\n" + "".join(f"{i:04d}" + "\x01" * 195 + "\n" for i in range(5_000))
        long = [f"{i:05d}" + "x" * 194 for i in range(5_000)]
        coupon = await create_coupon(session, stack, 100)

        async def save(name: str, members: Any) -> Answer | None:
            """The audience saved (None), or the answer refusing it."""
            url = f"{stack.gateway_url}/v1/audiences/{name}"
            if isinstance(members, str):
                sent = session.put(url, data=members.encode(),
                                   headers={**admin, "Content-Type": "text/csv"})  # fmt: skip
            else:
                sent = session.put(url, json={"members": members}, headers=admin)
            async with sent as saved:
                if saved.status == 201:
                    return None
                return Answer(saved.status, await saved.json(), {}, 0.0)

        async def both() -> list[Answer]:
            answers = []
            for name, members in (("escaped", escaped), ("long", long)):
                refused = await save(name, members)
                answers.append(refused or await _distribute(
                    stack, session, coupon["id"], {"audience": name}
                ))  # fmt: skip
            return answers

        (escaped_answer, long_answer), canaries = await _beside_canaries(stack, session, both())
    _report("past the byte bound", [escaped_answer, long_answer], canaries)
    assert escaped_answer.status == 400, escaped_answer.body
    assert "control character (U+0001)" in escaped_answer.body["detail"]
    assert long_answer.status == 413, long_answer.body
    assert f"at most {COMMAND_BYTES_MAX}" in long_answer.body["detail"]
    assert await stack.fetchval("SELECT count(*) FROM grants WHERE coupon_id = $1",
                                coupon["id"]) == 0  # fmt: skip
    assert canaries.added() < CANARY_ADDED_S_MAX, (canaries.slowest(), canaries.quiet)


async def test_ten_distributions_at_the_byte_bound_leave_every_partition_answering(
    stack: Stack,
) -> None:
    """Ten distributions at the command's byte bound at once (5,000 people of 150-character
    ids, to a saved audience). Before, ids of U+0001 made such commands of 6 MB each, and
    ten of them held every partition for up to 9.2 s."""
    async with aiohttp.ClientSession() as session:
        admin = stack.token("admin", True)
        members = [f"{i:05d}-" + "x" * 144 for i in range(5_000)]
        url = f"{stack.gateway_url}/v1/audiences/long-ids"
        async with session.put(
            url, json={"members": members}, headers={"Authorization": f"Bearer {admin}"}
        ) as response:
            assert response.status == 201, await response.text()  # fmt: skip
        wide = [await create_coupon(session, stack, 100) for _ in range(10)]

        async def all_ten() -> list[Answer]:
            sent = [_distribute(stack, session, c["id"], {"audience": "long-ids"}) for c in wide]
            return list(await asyncio.gather(*sent))

        answers, canaries = await _beside_canaries(stack, session, all_ten())
    _report("ten at the byte bound", answers, canaries)
    assert [a.status for a in answers] == [201] * 10, [a.body for a in answers if a.status != 201]
    assert [a.body["granted"] for a in answers] == [100] * 10
    assert canaries.added() < CANARY_ADDED_S_MAX, (canaries.slowest(), canaries.quiet)


async def test_a_distribution_at_the_grant_bound_leaves_every_partition_answering(
    stack: Stack,
) -> None:
    """One distribution making GRANTS_PER_COMMAND_MAX grants. Before, one of 100,000
    grants made claims on every partition wait 9.7 to 10.1 s."""
    async with aiohttp.ClientSession() as session:
        deep = await create_coupon(session, stack, GRANTS_PER_COMMAND_MAX, per_user_limit=2)
        people = [f"p{i}" for i in range(GRANTS_PER_COMMAND_MAX // 2)]
        body = {"users": people, "strategy": "equal", "per_user": 2}
        answers, canaries = await _beside_canaries(
            stack, session, _distribute(stack, session, deep["id"], body)
        )
    _report("one at the grant bound", [answers], canaries)
    assert answers.status == 201, answers.body
    assert answers.body["granted"] == GRANTS_PER_COMMAND_MAX
    assert canaries.added() < CANARY_ADDED_S_MAX, (canaries.slowest(), canaries.quiet)


def _report(what: str, answers: list[Answer], canaries: Canaries) -> None:
    print(f"\n{what}: answered in {max(a.seconds for a in answers):.2f} s;"
          f" {len(canaries.answers)} canaries, slowest {canaries.slowest():.2f} s"
          f" ({canaries.quiet:.2f} s before it; target {CANARY_S_TARGET:.0f} s)")  # fmt: skip


async def test_closing_a_big_coupon_revokes_it_a_slice_at_a_time(stack: Stack) -> None:
    """Issue 23, 2: revoking 500,000 grants was one statement, cancelled at its timeout 19
    times, with claims on the same partition waiting 182 s. Now each slice of sequence
    numbers is a command of its own; canaries on every partition, and steps of grants not
    reached yet are refused as revoked, while the slices go through."""
    async with aiohttp.ClientSession() as session:
        grants_n = REVOKED_PARTS * GRANTS_PER_COMMAND_MAX
        big = await create_coupon(session, stack, grants_n, daily_limit=False)
        for part in range(REVOKED_PARTS):
            people = [f"r{part}-{i}" for i in range(GRANTS_PER_COMMAND_MAX)]
            given = await _distribute(stack, session, big["id"], {"users": people})
            assert given.status == 201, given.body
        last = await stack.fetchval(
            "SELECT id::text FROM grants WHERE coupon_id = $1 ORDER BY seq DESC LIMIT 1", big["id"]
        )
        admin = stack.token("admin", True)
        url = f"{stack.gateway_url}/v1/coupons/{big['id']}?revoke=true"

        async def close() -> Answer:
            started = time.perf_counter()
            async with session.delete(
                url, headers={"Authorization": f"Bearer {admin}", "Prefer": "wait=10"}
            ) as response:
                body = await response.json()  # fmt: skip
            return Answer(response.status, body, {}, time.perf_counter() - started)

        async def closed_and_revoked() -> tuple[Answer, Answer, int]:
            """The close's answer, a step of the last grant right after, and the grants
            revoked once every slice is through: canaries are sent all along."""
            closed = await close()
            step = await post(session, f"{stack.gateway_url}/v1/grants/{last}/redeem",
                              stack.token(f"r{REVOKED_PARTS - 1}-4999"), {},
                              {"Prefer": "wait=10"})  # fmt: skip
            return closed, step, await _until_revoked(stack, big["id"], grants_n)

        (closed, step, revoked), canaries = await _beside_canaries(
            stack, session, closed_and_revoked()
        )
    _report(f"closing with revocation, {revoked} revoked", [closed], canaries)
    assert closed.status == 200, closed.body
    assert (closed.body["state"], closed.body["revoking"]) == ("closed", True)
    assert 0 < closed.body["revoked"] < grants_n
    assert step.status == 409 and step.body["reason"] == "revoked", step.body
    assert revoked == grants_n
    assert canaries.added() < CANARY_ADDED_S_MAX, (canaries.slowest(), canaries.quiet)


async def _until_revoked(stack: Stack, coupon_id: str, count: int) -> int:
    """How many of the coupon's grants are revoked, once `count` are (bounded)."""

    async def revoked() -> int:
        found: int = await stack.fetchval(
            "SELECT count(*) FROM grants WHERE coupon_id = $1 AND state = 'revoked'", coupon_id
        )
        return found

    async def all_revoked() -> bool:
        return await revoked() >= count

    await until(all_revoked, REVOKED_WITHIN_S, f"fewer than {count} grants revoked")
    return await revoked()
