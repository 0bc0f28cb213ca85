"""Every usage event is counted exactly once: through a crash, and when sent twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from services.metering.consumer import ACK_WAIT_S
from shared.client import ByomClient
from shared.contracts.usage import UsageEvent
from shared.settings import Settings
from tests.harness import Gateway
from tests.metering.events import expected_rows, make_events, row_key
from tests.metering.process import (
    MeteringProcess,
    publish_events,
    stored_requests,
    wait_until_answering,
)

EVENTS = 10_000


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[ByomClient]:
    gateway = Gateway(settings)
    client = await gateway.client("root", admin=True)
    yield client
    await client.close()


def recent_events(count: int, prefix: str | None = None) -> list[UsageEvent]:
    base = datetime.now(UTC) - timedelta(hours=2)
    return make_events(
        count, seed=11, base=base, span=timedelta(hours=1),
        prefix=prefix or uuid.uuid4().hex[:8],
    )  # fmt: skip


async def settle_at(client: ByomClient, expected: int, timeout: float) -> int:
    """Wait until metering holds ``expected`` requests, then a moment more."""
    deadline = time.monotonic() + timeout
    stored = await stored_requests(client)
    while stored < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        stored = await stored_requests(client)
    # A double count would come from a redelivered batch that was already
    # stored: wait past the redelivery delay before reading the final count.
    await asyncio.sleep(ACK_WAIT_S + 1)
    return await stored_requests(client)


async def test_a_metering_crash_mid_stream_loses_and_doubles_nothing(
    settings: Settings, nc: NatsClient, admin: ByomClient, tmp_path: Path
) -> None:
    """SIGKILL metering while 10,000 events arrive; totals come out exact."""
    events = recent_events(EVENTS)
    metering = MeteringProcess(settings, tmp_path / "metering.log")
    metering.start()
    try:
        await wait_until_answering(admin)
        publishing = asyncio.create_task(
            publish_events(nc.jetstream(), Gateway(settings).subjects, events)
        )
        while await stored_requests(admin) < EVENTS // 5:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        still_publishing = not publishing.done()
        metering.kill()
        await publishing
        metering.start()
        await wait_until_answering(admin)
        stored = await settle_at(admin, EVENTS, timeout=60)
        rows = (await admin.usage({"group_by": ["model", "project"]}))["rows"]
    finally:
        metering.stop()

    assert still_publishing, "metering was not killed in the middle of the events"
    assert stored == EVENTS
    assert {row_key(r, ["model", "project"], None): r for r in rows} == expected_rows(
        events, ["model", "project"], None
    )


async def test_every_event_sent_twice_is_counted_once(
    settings: Settings, nc: NatsClient, admin: ByomClient
) -> None:
    """Copies with the same Nats-Msg-Id and copies without one: each counts once."""
    events = recent_events(2_000)
    gateway = Gateway(settings)
    await gateway.start(["metering"])
    try:
        js = nc.jetstream()
        await publish_events(js, gateway.subjects, events)
        await publish_events(js, gateway.subjects, events)
        # Without a message id the stream keeps the copy; metering must not.
        await publish_events(js, gateway.subjects, events, msg_id=False)
        info = await js.stream_info(gateway.subjects.usage_stream)
        stored = await settle_at(admin, len(events), timeout=30)
        rows = (await admin.usage({"group_by": ["user"], "bucket": "minute"}))["rows"]
    finally:
        await gateway.stop()

    assert info.state.messages == 2 * len(events)
    assert stored == len(events)
    assert {row_key(r, ["user"], "minute"): r for r in rows} == expected_rows(
        events, ["user"], "minute"
    )
