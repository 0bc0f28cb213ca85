"""Reading ``BYOM_USAGE`` with a durable pull consumer, in batches.

A batch is written in one transaction and only then acknowledged, so a
crash between the two redelivers it; the store's primary key on the
request id keeps each request once, and JetStream's duplicate window drops
a republished event before it is even delivered.

An event that cannot be read (bad JSON, a missing field, a bad time) is
terminated at once and logged: no redelivery would fix it. An event the
store refuses is handed back for redelivery after a delay, at most
``MAX_DELIVER`` times in all; its last failure is logged as dropped.

Each event gets an ingest span whose parent is the router's context from
the message headers, so metering shows up in the request's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime

import orjson
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from pydantic import ValidationError

from services.metering.store import StoreError, UsageStore, utc_text
from shared import telemetry
from shared.contracts.usage import UsageEvent
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.subjects import Subjects

_log = get_logger(__name__)

BATCH = 512
MAX_DELIVER = 20
ACK_WAIT_S = 10.0
RETRY_DELAY_S = 2.0
LAG_INTERVAL_S = 5.0
CATCH_UP_LOG_S = 5.0
COALESCE_S = 0.1
"""After a short batch, wait this long before the next fetch: events that
trickle in are then stored in one transaction and one pull instead of one
each, which cut metering's CPU per event about threefold at 200 events/s,
for at most this much more delay before a request shows in queries."""


def durable_name(subjects: Subjects, replica: str) -> str:
    """Name the durable consumer of one metering replica's copy."""
    base = f"{subjects.stream_prefix}metering"
    return f"{base}-{replica}" if replica else base


class UsageConsumer:
    """Move usage events from the stream into the store."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        store: UsageStore,
        metrics: Metrics | None = None,
        *,
        replica: str = "",
        max_deliver: int = MAX_DELIVER,
        retry_delay_s: float = RETRY_DELAY_S,
    ) -> None:
        self._js = js
        self._max_deliver = max_deliver
        self._retry_delay_s = retry_delay_s
        self._subjects = subjects
        self._store = store
        self._metrics = metrics or Metrics()
        self._durable = durable_name(subjects, replica)
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._tracer = telemetry.tracer("byom.metering")
        self.stored = 0

    async def start(self) -> None:
        await self._js.add_consumer(
            self._subjects.usage_stream,
            ConsumerConfig(
                durable_name=self._durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                max_deliver=self._max_deliver,
                ack_wait=ACK_WAIT_S,
                max_ack_pending=BATCH * 8,
            ),
        )
        subscription = await self._js.pull_subscribe_bind(
            self._durable, stream=self._subjects.usage_stream
        )
        self._running = True
        self._subscription = subscription
        self._tasks = [
            asyncio.create_task(self._run(subscription)),
            asyncio.create_task(self._watch_lag()),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_failure)

    async def wait_caught_up(self) -> None:
        """Return once every event the stream held when called is stored.

        A replica answers queries only after this, so a copy that is still
        replaying never answers with part of the totals.
        """
        stream = self._subjects.usage_stream
        target = (await self._js.stream_info(stream)).state.last_seq
        logged = 0.0
        while True:
            info = await self._js.consumer_info(stream, self._durable)
            idle = info.num_pending == 0 and info.num_ack_pending == 0
            if idle or (info.ack_floor and info.ack_floor.stream_seq >= target):
                return
            if time.monotonic() - logged > CATCH_UP_LOG_S:
                logged = time.monotonic()
                _log.info("usage_catching_up", pending=info.num_pending)
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
            # nats-py turns a cancelled fetch into a TimeoutError.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await task
        self._tasks = []
        if self._subscription is not None:
            # Left subscribed, a pull subscription holds the connection's
            # drain for its full 30 s timeout.
            await self._subscription.unsubscribe()
            self._subscription = None

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        # nats-py turns a cancelled fetch into a timeout, so the loop also
        # checks a flag rather than relying on cancellation alone.
        while self._running:
            try:
                messages = await subscription.fetch(BATCH, timeout=1.0)
            except TimeoutError:
                # nats-py raises its own TimeoutError or asyncio's, depending
                # on where the empty pull ended; both mean "nothing yet".
                continue
            except NatsError as exc:
                _log.warning("usage_fetch_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            await self.ingest(messages)
            if len(messages) < BATCH:
                await asyncio.sleep(COALESCE_S)

    async def ingest(self, messages: list[Msg]) -> None:
        """Store one fetched batch, then acknowledge what is stored."""
        readable = [
            (message, event)
            for message in messages
            if (event := await self._read(message)) is not None
        ]
        spans = [self._ingest_span(message, event) for message, event in readable]
        try:
            stored = await self._store.insert([event for _, event in readable])
        except StoreError as exc:
            _log.error("usage_batch_failed", events=len(readable), exc_info=exc)
            if len(readable) == 1:
                await self._retry_later(*readable[0], exc)
            else:
                await self._store_one_by_one(readable)
        else:
            self._count(stored, len(readable))
            await _acknowledge([message for message, _ in readable])
        for span in spans:
            span.end()

    async def _store_one_by_one(self, readable: list[tuple[Msg, UsageEvent]]) -> None:
        # Isolates the event the store refuses so the rest of the batch lands.
        for message, event in readable:
            try:
                stored = await self._store.insert([event])
            except StoreError as exc:
                await self._retry_later(message, event, exc)
                continue
            self._count(stored, 1)
            await _acknowledge([message])

    async def _retry_later(
        self, message: Msg, event: UsageEvent, exc: StoreError
    ) -> None:
        if message.metadata.num_delivered < self._max_deliver:
            await message.nak(delay=self._retry_delay_s)
            return
        self._metrics.metering_events.labels("dropped").inc()
        _log.error(
            "usage_event_dropped",
            request_id=event.request_id,
            deliveries=message.metadata.num_delivered,
            exc_info=exc,
        )
        await message.term()

    async def _read(self, message: Msg) -> UsageEvent | None:
        """Decode an event; terminate one that no redelivery could fix."""
        try:
            event = UsageEvent.model_validate(orjson.loads(message.data))
            event.time = utc_text(datetime.fromisoformat(event.time))
        except (orjson.JSONDecodeError, ValidationError, ValueError) as exc:
            self._metrics.metering_events.labels("rejected").inc()
            _log.warning(
                "usage_event_rejected",
                sequence=message.metadata.sequence.stream,
                error=str(exc),
            )
            await message.term()
            return None
        return event

    def _ingest_span(self, message: Msg, event: UsageEvent) -> trace.Span:
        span = self._tracer.start_span(
            "metering ingest",
            context=telemetry.extract(message.headers),
            kind=trace.SpanKind.CONSUMER,
        )
        if span.is_recording():
            span.set_attribute("messaging.system", "nats")
            span.set_attribute("messaging.destination.name", message.subject)
            span.set_attribute("byom.request_id", event.request_id)
            span.set_attribute("gen_ai.request.model", event.model)
        return span

    def _count(self, stored: int, received: int) -> None:
        self.stored += stored
        self._metrics.metering_events.labels("stored").inc(stored)
        self._metrics.metering_events.labels("duplicate").inc(received - stored)
        _log.info("usage_batch_stored", received=received, stored=stored)

    async def _watch_lag(self) -> None:
        """Publish the consumer's backlog as gauges, every few seconds."""
        while self._running:
            try:
                info = await self._js.consumer_info(
                    self._subjects.usage_stream, self._durable
                )
            except (NatsError, TimeoutError) as exc:
                _log.debug("usage_lag_unknown", error=str(exc))
            else:
                self._metrics.consumer_pending.set(info.num_pending or 0)
                self._metrics.consumer_ack_pending.set(info.num_ack_pending or 0)
            await asyncio.sleep(LAG_INTERVAL_S)


async def _acknowledge(messages: list[Msg]) -> None:
    try:
        for message in messages:
            await message.ack()
    except NatsError as exc:
        # Stored already: the redelivery this causes is ignored by the store.
        _log.warning("usage_ack_failed", error=str(exc))


def _report_failure(task: asyncio.Task[None]) -> None:
    # A loop that dies stops metering without a sound; say so loudly.
    if not task.cancelled() and task.exception() is not None:
        _log.error("usage_consumer_died", exc_info=task.exception())
