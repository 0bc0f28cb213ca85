"""Publishing the registry's outbox to the ``BYOM_REGISTRY`` stream, in order.

A change is committed with its event in the outbox; the event is then sent
to the stream. When the stream does not take it (no leader during a node's
failover, a full stream), the event stays in the outbox and is sent again
every half second until the stream has it, with or without further changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from services.registry.restore import catch_up
from services.registry.store import RegistryStore
from shared.logs import get_logger
from shared.subjects import Subjects

_log = get_logger(__name__)

PUBLISH_TIMEOUT_S = 2.0
"""Wait for the stream's acknowledgement of one event before trying later."""
RETRY_EVERY_S = 0.5


class EventPublisher:
    """Send unpublished registry events; JetStream drops a resent duplicate."""

    def __init__(
        self,
        store: RegistryStore,
        js: Callable[[], JetStreamContext],
        subjects: Subjects,
    ) -> None:
        self._store = store
        self._js = js
        self._subjects = subjects
        self._sending = asyncio.Lock()
        self._published = asyncio.Event()
        self._retrier: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Catch the store up with the stream, then publish what is pending."""
        await catch_up(self._js(), self._subjects, self._store)
        await self.publish_pending()
        self._retrier = asyncio.create_task(self._retry_until_published())

    async def stop(self) -> None:
        if self._retrier is not None:
            self._retrier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrier

    async def publish_pending(self) -> bool:
        """Publish every event not yet acknowledged by the stream, in order.

        Return whether the outbox is empty. A failure leaves the rest for the
        retry loop; the change itself is already committed.
        """
        async with self._sending:
            for event in await self._store.unpublished():
                try:
                    await self._js().publish(
                        self._subjects.registry_event(event.kind),
                        event.model_dump_json().encode(),
                        timeout=PUBLISH_TIMEOUT_S,
                        stream=self._subjects.registry_stream,
                        headers={"Nats-Msg-Id": f"registry-v{event.version}"},
                    )
                except (NatsError, TimeoutError) as exc:
                    _log.warning(
                        "registry_event_unpublished",
                        version=event.version,
                        error=str(exc) or type(exc).__name__,
                    )
                    self._published.clear()
                    return False
                await self._store.mark_published(event.version)
            self._published.set()
            return True

    async def wait_published(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the outbox to empty."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._published.wait(), timeout)
        return self._published.is_set()

    async def _retry_until_published(self) -> None:
        while True:
            await asyncio.sleep(RETRY_EVERY_S)
            if not self._published.is_set():
                await self.publish_pending()
