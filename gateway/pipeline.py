"""How a write request reaches the allocator and how its answer comes back."""

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer

from gateway.replies import Replies
from gateway.retries import Retries
from gateway.tally import EdgeTally
from runtime import errors, hops, requests
from runtime.http import Problem, accept, json_response, refusal
from runtime.produce import Batcher, Saturated
from runtime.settings import Settings
from runtime.statuses import Statuses
from schemas import readmodel
from schemas.messages import COMMAND_BYTES_MAX, CouponStatus, Decision, Request, encode
from schemas.tickets import mint, mint_fresh, request_id_for
from schemas.topics import Topics, coupon_key, partition_of


class Envelope(TypedDict):
    """What every command a person sends carries besides its own fields: a command is
    made as `Kind(**envelope, ...its fields)`."""

    request_id: str  # from the Idempotency-Key: a retry names the same request
    at_ms: int  # when the gateway received it: the time the allocator decides it at
    reply_to: str  # this gateway's reply topic


@dataclass(frozen=True, slots=True)
class Decided:
    decision: Decision


@dataclass(frozen=True, slots=True)
class Pending:
    offset: int  # where the command stands in its partition's log


Answer = Decided | Pending
Render = Callable[[Decision, str], web.Response]  # a decision and its ticket, as HTTP


def unless_rejected(applied: Render) -> Render:
    """Show a rejection as its problem, anything else as `applied` does."""

    def render(decision: Decision, ticket: str) -> web.Response:
        if decision.outcome == "rejected":
            return rejection(decision, ticket)
        return applied(decision, ticket)

    return render


@dataclass
class Gateway:
    settings: Settings
    topics: Topics
    reply_topic: str
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    batcher: Batcher
    replies: Replies
    statuses: Statuses
    gateway_id: str
    retries: Retries = field(init=False)  # answers on coupons that are over: gateway/retries.py
    edge: EdgeTally = field(init=False)  # what it answered without the log: gateway/tally.py

    def __post_init__(self) -> None:
        self.retries = Retries(self.pool)
        self.edge = EdgeTally(self.producer, self.topics.edge, self.gateway_id)

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def ticket(self, coupon_id: str, request_id: str) -> str:
        return mint(self.settings.ticket_secret, coupon_id, request_id)

    def fresh_ticket(self, coupon_id: str) -> str:
        """The ticket of a new request that needs no id of its own: one the edge refuses."""
        return mint_fresh(self.settings.ticket_secret, coupon_id)

    def ticket_url(self, ticket: str) -> str:
        return f"{self.settings.notifier_public_url}/v1/tickets/{ticket}"

    async def coupon(self, coupon_id: str) -> CouponStatus | None:
        known = self.statuses.get(coupon_id)
        if known is not None:
            return known
        row = await self.pool.fetchrow(readmodel.COUPON_BY_ID, coupon_id)
        if row is None:
            return None
        status = readmodel.status_from_row(row)
        self.statuses.learn(status)
        return status

    def request_id(self, key: str | None, user_id: str, scope: str) -> str:
        """A request's id: derived from its Idempotency-Key (`requests.idempotency_key`),
        so a retry names the same request; a fresh one without a key."""
        if key is None:
            return str(uuid.uuid4())
        return request_id_for(self.settings.ticket_secret, user_id, scope, key)

    def envelope(self, request: web.Request, user_id: str, scope: str) -> Envelope:
        """What a command carries besides its own fields; `scope` names what the request
        does, so that one Idempotency-Key names one request per person and scope."""
        key = requests.idempotency_key(request)
        return Envelope(
            request_id=self.request_id(key, user_id, scope),
            at_ms=self.now_ms(),
            reply_to=self.reply_topic,
        )

    async def answer(
        self, request: web.Request, command: Request, render: Render, wait_s: float | None = None
    ) -> web.Response:
        """Hand a command on and answer: its decision as `render` shows it, or `202` with
        its ticket when the decision comes later than the client would wait."""
        if wait_s is None:
            settings = self.settings
            wait_s = requests.wait_s(
                request, settings.claim_wait_s_default, settings.claim_wait_s_max
            )
        outcome = await self.submit(request, command, wait_s)
        if isinstance(outcome, Pending):
            return await self.pending(command, outcome.offset)
        return render(outcome.decision, self.ticket(command.coupon_id, command.request_id))

    async def submit(self, request: web.Request, command: Request, wait_s: float) -> Answer:
        """Produce a command; its decision if it comes within `wait_s`, else where it
        stands in the log. From the produce on, whatever fails answers 202 with the ticket
        (`http.accept`)."""
        future = self.replies.expect(command.request_id)
        try:
            offset = await self._produce(command)
            accept(request, lambda: self.pending_at(command, None))
            try:
                async with asyncio.timeout(wait_s):
                    return Decided(await future)
            except (TimeoutError, asyncio.CancelledError):
                # Late, or our own future cancelled: the ticket answers it. A cancellation
                # of this task itself (the server stopping) goes on.
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise
                return Pending(offset)
        finally:
            self.replies.forget(command.request_id, future)

    async def _produce(self, command: Request) -> int:
        """Append a command to the log; its offset. A 503 when it was not appended."""
        value = encode(command)
        if len(value) > COMMAND_BYTES_MAX:
            raise Problem(
                "too-large",
                f"this request makes a command of {len(value)} bytes; one holds at most"
                f" {COMMAND_BYTES_MAX} (send fewer or shorter ids or codes at a time)",
                bytes_max=COMMAND_BYTES_MAX,
            )
        started = time.perf_counter()
        try:
            # asyncio.timeout, not wait_for: wait_for makes a task of every claim.
            async with asyncio.timeout(self.settings.produce_timeout_s):
                offset = await self.batcher.send(
                    self.topics.commands, coupon_key(command.coupon_id), value
                )
        except Saturated as error:
            raise Problem(
                "overloaded",
                f"the request was not accepted ({error}); retry shortly",
                headers={"Retry-After": "1"},
            ) from error
        except Exception as error:
            if not errors.unavailable(error):
                raise
            raise Problem(
                "unavailable",
                f"the request was not accepted ({type(error).__name__}); retry shortly",
                headers={"Retry-After": "1"},
            ) from error
        hops.spent("gateway_produce", started)
        return offset

    async def position(self, request_id: str, coupon_id: str, offset: int) -> int | None:
        """How many are ahead of a pending request (itself included), if we can tell."""
        try:
            in_line = await self.pool.fetchval(readmodel.LINE_POSITION, request_id)
            if in_line is not None:
                return int(in_line)
            partition = _partition(self.producer, self.topics.commands, coupon_id)
            done = await self.pool.fetchval(
                readmodel.PARTITION_NEXT_OFFSET, self.topics.commands, partition
            )
        except Exception as error:
            if not errors.known(error):
                raise
            return None  # the position is a courtesy: the ticket is the answer
        return max(offset - (done or 0) + 1, 1)

    async def pending(self, command: Request, offset: int) -> web.Response:
        position = await self.position(command.request_id, command.coupon_id, offset)
        return self.pending_at(command, position)

    def pending_at(self, command: Request, position: int | None) -> web.Response:
        ticket = self.ticket(command.coupon_id, command.request_id)
        return json_response(
            {"ticket": ticket, "status": "pending", "position": position},
            status=202,
            headers={"Location": self.ticket_url(ticket), "Retry-After": "1"},
        )


def _partition(producer: AIOKafkaProducer, topic: str, coupon_id: str) -> int:
    partitions = producer.client.cluster.partitions_for_topic(topic) or {0}
    return partition_of(coupon_id, len(partitions))


def rejection(decision: Decision, ticket: str, **extra: Any) -> web.Response:
    return refusal(decision.reason or "rejected", ticket=ticket, **extra)


GATEWAY = web.AppKey("gateway", Gateway)
