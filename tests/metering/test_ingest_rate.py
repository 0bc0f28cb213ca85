"""Metering drains a backlog of usage events faster than the router makes them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats

from services.metering.consumer import UsageConsumer
from services.metering.store import UsageStore
from shared import bus
from shared.logs import get_logger
from tests.harness import Gateway, gateway_settings
from tests.metering.process import publish_events
from tests.metering.test_exactly_once import recent_events

BACKLOG = 10_000
FLOOR_PER_S = 2_000
"""Well under what the loaded CI machine measures (docs/metering.md), and
above the gateway's own request rate there, so a slowdown that would let
metering fall behind fails here."""

_log = get_logger(__name__)


async def test_metering_ingests_a_backlog_of_10000_events_quickly(
    nats_url: str, tmp_path: Path
) -> None:
    subjects = Gateway(gateway_settings(nats_url, tmp_path)).subjects
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await bus.bootstrap(js, subjects, 1)
    await publish_events(js, subjects, recent_events(BACKLOG))
    store = UsageStore(tmp_path / "usage.sqlite3")
    await store.start()
    consumer = UsageConsumer(js, subjects, store)

    started = time.perf_counter()
    await consumer.start()
    while consumer.stored < BACKLOG and time.perf_counter() - started < 60:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await consumer.stop()
    await store.stop()
    await nc.close()

    rate = consumer.stored / elapsed
    _log.warning("metering_ingest_rate", events=consumer.stored, per_s=round(rate))
    assert consumer.stored == BACKLOG
    assert rate > FLOOR_PER_S
