"""Metering replicas: each keeps a whole copy and answers only once caught up.

Each replica reads ``BYOM_USAGE`` through a durable consumer of its own
(``BYOM_METERING_REPLICA`` names it) into its own database, so whichever
replica answers a query answers with every event; a replica that is still
replaying does not answer yet.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from services.metering.app import build as build_metering
from shared.service import Service
from shared.settings import Settings
from tests.harness import Gateway
from tests.metering.events import make_events
from tests.metering.process import publish_events

EVENTS = 3_000


def replica(settings: Settings, name: str, data_dir: Path) -> Service:
    return build_metering(
        settings.model_copy(
            update={
                "metering_replica": name,
                "data_dir": data_dir,
                "instance": f"{settings.instance}-metering-{name or 'first'}",
            }
        )
    )


def stored(data_dir: Path) -> int:
    path = data_dir / "metering.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM usage").fetchone()[0])


async def test_a_late_replica_holds_every_event_before_it_serves(
    settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    events = make_events(
        EVENTS, seed=5, base=datetime.now(UTC) - timedelta(hours=1),
        span=timedelta(minutes=30), prefix=uuid.uuid4().hex[:8],
    )  # fmt: skip
    subjects = Gateway(settings).subjects
    first = replica(settings, "", tmp_path / "first")
    late = replica(settings, "b", tmp_path / "late")
    await first.start()
    try:
        await publish_events(nc.jetstream(), subjects, events)
        await late.start()
        held_when_serving = stored(tmp_path / "late")
    finally:
        await late.stop()
        await first.stop()
    await first.start()
    await first.stop()

    assert held_when_serving == EVENTS
    assert stored(tmp_path / "first") == EVENTS


def test_a_replica_name_that_cannot_name_a_consumer_is_refused(
    settings: Settings,
) -> None:
    with pytest.raises(ValueError, match="metering_replica"):
        Settings(**{**settings.model_dump(), "metering_replica": "a.b"})
