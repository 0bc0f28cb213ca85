"""What every registry endpoint shares: the store, the outbox, one writer.

Each endpoint validates its body, checks the caller's permission, and makes
its change with ``RegistryCore.change``: the object, the new registry
version and its event are written in one transaction, then the event is
published to ``BYOM_REGISTRY`` before the reply goes out, so a caller that
has its answer can count on the followers seeing the change next. When the
stream does not take the event in time the caller gets ``unavailable``
saying the change is saved; the outbox keeps sending it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from services.registry import store as writes
from services.registry.publisher import EventPublisher
from services.registry.store import RegistryStore
from shared.contracts.events import EventKind
from shared.errors import Conflict, NotFound, Unavailable
from shared.logs import get_logger
from shared.secrets import SecretBox

_log = get_logger(__name__)

EVENT_WAIT_S = 4.0
"""How long a change waits for the stream to take its event before it
answers ``unavailable``: below the clients' 10 s request timeout."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RegistryCore:
    """The registry's state and the one path by which it changes."""

    def __init__(
        self, store: RegistryStore, publisher: EventPublisher, box: SecretBox
    ) -> None:
        self.store = store
        self.box = box
        self._publisher = publisher
        # Check-then-write sequences (unique names, models on a source) and
        # versions stay consistent only if one change runs at a time.
        self._writing = asyncio.Lock()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Hold the registry's write lock for a check-then-change sequence."""
        async with self._writing:
            yield

    async def change(
        self, kind: EventKind, data: dict[str, Any], write: writes.Write
    ) -> int:
        """Commit one change and publish its event; call under ``writing``."""
        try:
            event = await self.store.commit_change(kind, data, now_iso(), write)
        except aiosqlite.IntegrityError as exc:
            raise Conflict(f"the change conflicts with existing data: {exc}") from exc
        _log.info("registry_changed", kind=kind, version=event.version)
        published = await self._publisher.publish_pending()
        if not published and not await self._publisher.wait_published(EVENT_WAIT_S):
            raise Unavailable(
                f"the change is saved as registry version {event.version}, but "
                "the registry event stream has not taken it yet; the registry "
                "sends it again until it does, and every replica applies it then"
            )
        return event.version

    async def existing(self, table: str, rid: str) -> dict[str, Any]:
        """Return a source or model by rid, or refuse with ``not_found``."""
        found = await self.store.get(table, rid)
        if found is None:
            raise NotFound(f"no {table[:-1]} with rid {rid!r}: check the rid")
        return found

    async def model_by_rid_or_name(self, ref: str) -> dict[str, Any]:
        """Return a model named by rid or by name, or refuse with ``not_found``."""
        found = await self.store.get("models", ref)
        found = found or await self.store.find_by_name("models", ref)
        if found is None:
            raise NotFound(f"no model with rid or name {ref!r}")
        return found

    async def name_free(self, table: str, name: str, rid: str | None = None) -> None:
        """Refuse a name another object of the table already has."""
        holder = await self.store.find_by_name(table, name)
        if holder is not None and holder["rid"] != rid:
            raise Conflict(
                f"a {table[:-1]} named {name!r} already exists: choose another name"
            )
