"""Reading ``BYOM_USAGE`` with a durable pull consumer, in batches.

A batch is written in one transaction and only then acknowledged, so a
crash between the two redelivers it; the store's primary key on the
request id keeps each request once.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from services.metering.store import UsageStore
from shared.contracts.usage import UsageEvent
from shared.logs import get_logger
from shared.subjects import Subjects

_log = get_logger(__name__)

BATCH = 256
MAX_DELIVER = 20
ACK_WAIT_S = 30.0


class UsageConsumer:
    """Move usage events from the stream into the store."""

    def __init__(
        self, js: JetStreamContext, subjects: Subjects, store: UsageStore
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._store = store
        self._durable = f"{subjects.stream_prefix}metering"
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._subscription: JetStreamContext.PullSubscription | None = None
        self.stored = 0

    async def start(self) -> None:
        await self._js.add_consumer(
            self._subjects.usage_stream,
            ConsumerConfig(
                durable_name=self._durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                max_deliver=MAX_DELIVER,
                ack_wait=ACK_WAIT_S,
                max_ack_pending=BATCH * 8,
            ),
        )
        subscription = await self._js.pull_subscribe_bind(
            self._durable, stream=self._subjects.usage_stream
        )
        self._running = True
        self._subscription = subscription
        self._task = asyncio.create_task(self._run(subscription))

    async def stop(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            # nats-py turns a cancelled fetch into a TimeoutError.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await self._task
            self._task = None
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
            except NatsTimeout:
                continue
            except NatsError as exc:
                _log.warning("usage_fetch_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            await self._store_batch(messages)

    async def _store_batch(self, messages: list[Msg]) -> None:
        events: list[UsageEvent] = []
        good = []
        for message in messages:
            try:
                events.append(UsageEvent.model_validate(orjson.loads(message.data)))
            except (orjson.JSONDecodeError, ValidationError) as exc:
                _log.error("usage_event_rejected", error=str(exc))
                await message.term()
                continue
            good.append(message)
        stored = await self._store.insert(events)
        self.stored += stored
        for message in good:
            await message.ack()
        _log.info("usage_batch_stored", received=len(events), stored=stored)
