"""Publishing the registry's outbox to the ``BYOM_REGISTRY`` stream, in order."""

from __future__ import annotations

from collections.abc import Callable

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.registry.store import RegistryStore
from shared.contracts.events import RegistryEvent
from shared.logs import get_logger
from shared.subjects import Subjects

_log = get_logger(__name__)


class RegistryDiverged(RuntimeError):
    """The registry stream is ahead of the registry's own database."""


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
        """Check the stream matches the store, then publish what is pending."""
        published = await self._stream_version()
        if published > self._store.last_version:
            raise RegistryDiverged(
                f"the {self._subjects.registry_stream} stream holds registry version "
                f"{published} but this registry's database is at version "
                f"{self._store.last_version}: start the registry on the data "
                "directory that wrote the stream (BYOM_DATA_DIR), restore its "
                "backup, or delete the stream to start an empty registry"
            )
        await self.publish_pending()

    async def _stream_version(self) -> int:
        """Return the version of the last event in the stream, 0 when empty."""
        try:
            info = await self._js().stream_info(self._subjects.registry_stream)
            if info.state.last_seq == 0:
                return 0
            last = await self._js().get_msg(
                self._subjects.registry_stream, info.state.last_seq
            )
        except NotFoundError:
            return 0
        return RegistryEvent.model_validate_json(last.data or b"{}").version

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
