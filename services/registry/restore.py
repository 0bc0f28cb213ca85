"""Bringing the registry's database up to the ``BYOM_REGISTRY`` stream.

Every event carries the whole new state of its object (a source with its
secret sealed), so the stream holds everything the database does, and the
stream is what every router and limiter already follows. A registry whose
database is behind the stream (lost with its disk, restored from an older
backup, a fresh data directory) applies the events it lacks, in order,
before it serves. A database whose history is not the stream's (another
deployment's file, events the stream never had) is refused instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from services.registry import store as writes
from services.registry.store import RegistryStore
from shared.contracts.events import RegistryEvent
from shared.logs import get_logger
from shared.subjects import Subjects

_log = get_logger(__name__)

READ_TIMEOUT_S = 5.0


class RegistryDiverged(RuntimeError):
    """The registry's database holds a history the stream does not."""


def _source(data: dict[str, Any]) -> writes.Write:
    doc = {key: value for key, value in data.items() if key != "sealed_secret"}
    return writes.put_source(doc, data.get("sealed_secret"))


WRITES: dict[str, Callable[[dict[str, Any]], writes.Write]] = {
    "source.upserted": _source,
    "source.deleted": lambda data: writes.delete_row("sources", data["rid"]),
    "model.upserted": writes.put_model,
    "model.deleted": lambda data: writes.delete_model(data["rid"]),
    "access.set": lambda data: writes.put_setting("access", data),
    "project_limits.set": writes.put_project_limits,
}
"""How each kind of event is written back into the database."""


async def catch_up(
    js: JetStreamContext, subjects: Subjects, store: RegistryStore
) -> int:
    """Apply the stream's events the store lacks; return how many were applied.

    A store level with the stream (every restart but the first) costs one
    read: the stream's last event, checked against the store's own.
    """
    stream = subjects.registry_stream
    last_seq = (await js.stream_info(stream)).state.last_seq
    if last_seq == 0:
        return 0
    known = store.last_version
    stored = await js.get_msg(stream, last_seq)
    last = RegistryEvent.model_validate_json(stored.data or b"{}")
    if last.version <= known:
        return await _apply(store, last, known)
    applied = 0
    subscription = await js.subscribe(
        subjects.registry_events,
        stream=stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    try:
        seq = 0
        while seq < last_seq:
            msg = await subscription.next_msg(timeout=READ_TIMEOUT_S)
            seq = msg.metadata.sequence.stream
            event = RegistryEvent.model_validate_json(msg.data)
            applied += await _apply(store, event, known)
    finally:
        await subscription.unsubscribe()
    if applied:
        _log.info("registry_restored", events=applied, version=store.last_version)
    return applied


async def _apply(store: RegistryStore, event: RegistryEvent, known: int) -> int:
    """Check an event against the store's history, or write it; return 1 if
    written."""
    if event.version <= known:
        mine = await store.event_at(event.version)
        if mine is not None and mine != event:
            raise RegistryDiverged(
                f"registry version {event.version} in this database differs from "
                "the stream's: start the registry on the data directory that wrote "
                "the stream (BYOM_DATA_DIR), or on an empty one to rebuild it"
            )
        return 0
    if event.version != store.last_version + 1:
        raise RegistryDiverged(
            f"the stream skips from registry version {store.last_version} to "
            f"{event.version}: it was not written by this registry's history"
        )
    await store.apply_published(event, WRITES[event.kind](event.data))
    return 1
