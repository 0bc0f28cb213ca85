"""Publishing the registry's outbox to the ``BYOM_REGISTRY`` stream, in order."""

from __future__ import annotations

from collections.abc import Callable

from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from services.registry.store import RegistryStore
from shared.logs import get_logger
from shared.subjects import Subjects

_log = get_logger(__name__)


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

    async def start(self) -> None:
        """Publish what an earlier run committed but could not send."""
        await self.publish_pending()

    async def stop(self) -> None:
        return None

    async def publish_pending(self) -> None:
        """Publish every event not yet acknowledged by the stream.

        A failure leaves the rest in the outbox for the next change or the
        next start; the change itself is already committed.
        """
        for event in await self._store.unpublished():
            try:
                await self._js().publish(
                    self._subjects.registry_event(event.kind),
                    event.model_dump_json().encode(),
                    stream=self._subjects.registry_stream,
                    headers={"Nats-Msg-Id": f"registry-v{event.version}"},
                )
            except (NatsError, TimeoutError) as exc:
                _log.warning(
                    "registry_event_unpublished", version=event.version, error=str(exc)
                )
                return
            await self._store.mark_published(event.version)
