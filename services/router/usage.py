"""Usage events: one per inference request, published to ``BYOM_USAGE``.

An event is written to the connection before the caller's reply, so a
router that dies after answering has already handed its event to NATS.
The stream's acknowledgement is not awaited on the reply path: acks arrive
on one inbox subscription, and an event not acknowledged in time is sent
again with the same ``Nats-Msg-Id``, which the stream keeps once. ``drain``
waits for every outstanding acknowledgement before the router stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from shared.contracts.usage import UsageEvent
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.subjects import Subjects

_log = get_logger(__name__)

ACK_TIMEOUT_S = 2.0
PUBLISH_ATTEMPTS = 20
RESEND_EVERY_S = 0.25
DRAIN_TIMEOUT_S = 10.0


@dataclass(slots=True)
class _Unacked:
    request_id: str
    subject: str
    payload: bytes
    headers: dict[str, str]
    sent_at: float
    attempts: int = 1


class UsagePublisher:
    """Publish usage events durably without delaying replies."""

    def __init__(
        self, nc: NatsClient, subjects: Subjects, *, metrics: Metrics | None = None
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._metrics = metrics
        self._inbox = nc.new_inbox()
        self._tokens = itertools.count()
        self._unacked: dict[str, _Unacked] = {}
        self._all_acked = asyncio.Event()
        self._all_acked.set()
        self._acks: Subscription | None = None
        self._resender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._acks = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        self._resender = asyncio.create_task(self._resend_forever())

    async def publish(self, event: UsageEvent, headers: dict[str, str]) -> None:
        """Write one event to the connection; its ack is awaited elsewhere."""
        if self._metrics is not None:
            _count(self._metrics, event)
        unacked = _Unacked(
            request_id=event.request_id,
            subject=self._subjects.usage(_subject_token(event.model)),
            payload=event.model_dump_json(exclude_none=True).encode(),
            headers={**headers, "Nats-Msg-Id": event.request_id},
            sent_at=time.monotonic(),
        )
        await self._send(str(next(self._tokens)), unacked)

    async def drain(self) -> None:
        """Wait, boundedly, until the stream has acknowledged every event."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_acked.wait(), DRAIN_TIMEOUT_S)
        for lost in self._unacked.values():
            _log.error("usage_event_unacknowledged", request_id=lost.request_id)
        if self._resender is not None:
            self._resender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resender
        if self._acks is not None:
            await self._acks.unsubscribe()

    async def _send(self, token: str, unacked: _Unacked) -> None:
        self._unacked[token] = unacked
        self._all_acked.clear()
        try:
            await self._nc.publish(
                unacked.subject,
                unacked.payload,
                reply=f"{self._inbox}.{token}",
                headers=unacked.headers,
            )
        except NatsError as exc:
            # Left in the table: the resend loop tries again.
            _log.warning(
                "usage_publish_failed", request_id=unacked.request_id, error=str(exc)
            )

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        if _acknowledged(msg):
            self._unacked.pop(token, None)
            if not self._unacked:
                self._all_acked.set()

    async def _resend_forever(self) -> None:
        while True:
            await asyncio.sleep(RESEND_EVERY_S)
            await self._resend_overdue()

    async def _resend_overdue(self) -> None:
        overdue_before = time.monotonic() - ACK_TIMEOUT_S
        # Insertion order is send order: stop at the first one not yet due.
        for token, unacked in list(self._unacked.items()):
            if unacked.sent_at > overdue_before:
                return
            del self._unacked[token]
            if unacked.attempts >= PUBLISH_ATTEMPTS:
                _log.error("usage_event_lost", request_id=unacked.request_id)
                if not self._unacked:
                    self._all_acked.set()
                continue
            unacked.attempts += 1
            unacked.sent_at = time.monotonic()
            _log.warning(
                "usage_publish_retry",
                request_id=unacked.request_id,
                attempt=unacked.attempts,
            )
            await self._send(str(next(self._tokens)), unacked)


def _acknowledged(msg: Msg) -> bool:
    """Tell a stream's ack from its refusal (or a no-responders status)."""
    if msg.headers and msg.headers.get("Status"):
        return False
    try:
        body = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and "error" not in body and "seq" in body


def _count(metrics: Metrics, event: UsageEvent) -> None:
    metrics.usage_events.labels(event.model, event.status).inc()
    for kind in ("prompt", "completion", "reasoning", "cached"):
        used = getattr(event, f"{kind}_tokens")
        if used:
            metrics.tokens.labels(event.model, kind).inc(used)


def _subject_token(model: str) -> str:
    """Make a model name safe as subject tokens (names never hold spaces)."""
    return model.replace("*", "_").replace(">", "_") or "_"
