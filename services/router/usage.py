"""Usage events: one per inference request, published to ``BYOM_USAGE``.

Events are published in the background so the caller's reply never waits
for the stream's acknowledgement. A failed publish is retried with the same
``Nats-Msg-Id``, so the stream keeps one copy; ``drain`` waits for every
event in flight before the router stops.
"""

from __future__ import annotations

import asyncio

from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from shared.contracts.usage import UsageEvent
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.subjects import Subjects

_log = get_logger(__name__)

PUBLISH_ATTEMPTS = 20
RETRY_DELAY_S = 0.25


class UsagePublisher:
    """Publish usage events durably without delaying replies."""

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._metrics = metrics
        self._in_flight: set[asyncio.Task[None]] = set()

    def publish(self, event: UsageEvent, headers: dict[str, str]) -> None:
        """Queue one event for publishing; returns at once."""
        if self._metrics is not None:
            _count(self._metrics, event)
        task = asyncio.create_task(self._publish(event, headers))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def drain(self) -> None:
        """Wait until every queued event is acknowledged or given up."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    async def _publish(self, event: UsageEvent, headers: dict[str, str]) -> None:
        payload = event.model_dump_json(exclude_none=True).encode()
        headers = {**headers, "Nats-Msg-Id": event.request_id}
        subject = self._subjects.usage(_subject_token(event.model))
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                await self._js.publish(
                    subject,
                    payload,
                    stream=self._subjects.usage_stream,
                    headers=headers,
                )
            except (NatsError, TimeoutError) as exc:
                _log.warning(
                    "usage_publish_retry",
                    request_id=event.request_id,
                    attempt=attempt,
                    error=str(exc),
                )
                await asyncio.sleep(RETRY_DELAY_S * attempt)
            else:
                return
        _log.error("usage_event_lost", request_id=event.request_id, model=event.model)


def _count(metrics: Metrics, event: UsageEvent) -> None:
    metrics.usage_events.labels(event.model, event.status).inc()
    for kind in ("prompt", "completion", "reasoning", "cached"):
        used = getattr(event, f"{kind}_tokens")
        if used:
            metrics.tokens.labels(event.model, kind).inc(used)


def _subject_token(model: str) -> str:
    """Make a model name safe as subject tokens (names never hold spaces)."""
    return model.replace("*", "_").replace(">", "_") or "_"
