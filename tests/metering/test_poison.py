"""Events metering cannot take are set aside, and never block the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from services.metering.consumer import UsageConsumer
from services.metering.store import StoreError, UsageStore
from shared import bus
from shared.contracts.usage import UsageEvent
from shared.metrics import Metrics
from shared.subjects import Subjects
from tests.harness import Gateway, gateway_settings
from tests.metering.process import publish_events
from tests.metering.test_exactly_once import recent_events

MAX_DELIVER = 3


class RefusingStore(UsageStore):
    """A store that refuses any batch holding one particular request."""

    def __init__(self, path: Path, refused: str) -> None:
        super().__init__(path)
        self.refused = refused
        self.attempts = 0

    async def insert(self, events: Sequence[UsageEvent]) -> int:
        if any(event.request_id == self.refused for event in events):
            self.attempts += 1
            raise StoreError("disk says no")
        return await super().insert(events)


@pytest.fixture
async def stream(
    nats_url: str, tmp_path: Path
) -> AsyncIterator[tuple[NatsClient, Subjects]]:
    subjects = Gateway(gateway_settings(nats_url, tmp_path)).subjects
    nc = await nats.connect(nats_url)
    await bus.bootstrap(nc.jetstream(), subjects, 1)
    yield nc, subjects
    await nc.close()


async def run_consumer(
    nc: NatsClient, subjects: Subjects, store: UsageStore, metrics: Metrics, until: int
) -> UsageConsumer:
    consumer = UsageConsumer(
        nc.jetstream(), subjects, store, metrics, max_deliver=MAX_DELIVER,
        retry_delay_s=0.1,
    )  # fmt: skip
    await store.start()
    await consumer.start()
    for _ in range(300):
        if metrics_total(metrics) >= until:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    await consumer.stop()
    await store.stop()
    return consumer


def counted(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "byom_metering_events_total", {"result": result}
    )
    return value or 0.0


def metrics_total(metrics: Metrics) -> float:
    return sum(counted(metrics, r) for r in ("stored", "rejected", "dropped"))


async def test_unreadable_events_are_terminated_and_the_rest_stored(
    stream: tuple[NatsClient, Subjects], tmp_path: Path
) -> None:
    nc, subjects = stream
    js = nc.jetstream()
    events = recent_events(20)
    await publish_events(js, subjects, events[:10])
    await js.publish(subjects.usage("m"), b"{not json", stream=subjects.usage_stream)
    await js.publish(subjects.usage("m"), b'{"request_id": "x"}')
    broken_time = events[0].model_copy(update={"request_id": "t", "time": "noon"})
    await publish_events(js, subjects, [broken_time, *events[10:]])
    metrics = Metrics()

    consumer = await run_consumer(
        nc, subjects, UsageStore(tmp_path / "u.db"), metrics, until=23
    )

    assert consumer.stored == 20
    assert counted(metrics, "rejected") == 3
    info = await js.consumer_info(
        subjects.usage_stream, f"{subjects.stream_prefix}metering"
    )
    assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)


async def test_an_event_the_store_keeps_refusing_is_dropped_after_the_last_delivery(
    stream: tuple[NatsClient, Subjects], tmp_path: Path
) -> None:
    nc, subjects = stream
    events = recent_events(50)
    await publish_events(nc.jetstream(), subjects, events)
    store = RefusingStore(tmp_path / "u.db", refused=events[7].request_id)
    metrics = Metrics()

    consumer = await run_consumer(nc, subjects, store, metrics, until=50)

    assert consumer.stored == 49
    assert counted(metrics, "dropped") == 1
    # One failed batch, then the event alone on each of its deliveries.
    assert store.attempts == 1 + MAX_DELIVER
    info = await nc.jetstream().consumer_info(
        subjects.usage_stream, f"{subjects.stream_prefix}metering"
    )
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
