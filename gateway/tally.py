"""Claims answered at the edge never reach the command log. So the log still tells a
coupon's whole story (`coupons report`), each gateway counts them, per coupon and reason,
and once a second appends the counts to coupon.edge (schemas/messages.EdgeAnswers).

Counting is a dictionary increment on the claim's path; the append is off it. Counts the
broker did not take are kept and sent with the next second's, so none is lost while the
gateway lives; a gateway that dies loses at most its last second's counts.
"""

import asyncio
import logging
import time
from collections import Counter, defaultdict

from aiokafka import AIOKafkaProducer

from runtime.produce import Message, send_all
from schemas.messages import EdgeAnswers, encode
from schemas.topics import coupon_key

log = logging.getLogger(__name__)

TALLY_EVERY_S = 1.0


class EdgeTally:
    def __init__(self, producer: AIOKafkaProducer, topic: str, gateway_id: str) -> None:
        self.producer = producer
        self.topic = topic
        self.gateway_id = gateway_id
        self.counts: Counter[tuple[str, str]] = Counter()  # (coupon id, reason)
        self.spans: dict[str, tuple[int, int]] = {}  # coupon id: first and last answer
        self.since_ms = int(time.time() * 1000)

    def count(self, coupon_id: str, reason: str, now_ms: int) -> None:
        self.counts[(coupon_id, reason)] += 1
        first, _ = self.spans.get(coupon_id, (now_ms, now_ms))
        self.spans[coupon_id] = (first, now_ms)

    def messages(self, now_ms: int) -> list[Message]:
        """The counts since the last append, one message per coupon; the counts restart."""
        by_coupon: defaultdict[str, dict[str, int]] = defaultdict(dict)
        for (coupon_id, reason), n in self.counts.items():
            by_coupon[coupon_id][reason] = n
        spans, self.spans, self.counts = self.spans, {}, Counter()
        since, self.since_ms = self.since_ms, now_ms
        return [
            (self.topic, coupon_key(coupon_id), encode(EdgeAnswers(
                coupon_id, self.gateway_id, since, now_ms, reasons, *spans[coupon_id]
            )))
            for coupon_id, reasons in by_coupon.items()
        ]  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """Append the counts every second until `stop`, then once more."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), TALLY_EVERY_S)
            except TimeoutError:
                pass
            await self._append()

    async def _append(self) -> None:
        held, spans, since = self.counts.copy(), dict(self.spans), self.since_ms
        messages = self.messages(int(time.time() * 1000))
        if not messages:
            return
        try:
            await send_all(self.producer, messages)
        except Exception as error:  # noqa: BLE001 - any broker failure: keep the counts
            log.warning("edge counts not appended (%s); sending them with the next", error)
            self.counts.update(held)
            for coupon_id, (first, last) in spans.items():
                now = self.spans.get(coupon_id, (first, last))
                self.spans[coupon_id] = (min(first, now[0]), max(last, now[1]))
            self.since_ms = since
