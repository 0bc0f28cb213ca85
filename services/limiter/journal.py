"""The write-ahead journal of one limiter partition, and its snapshots.

Every decision that changes a partition's windows (a grant, a settlement, a
refund) is appended to ``byom.limiter.journal.<p>`` in batches. Each batch
names the last sequence its writer saw on that subject
(``Nats-Expected-Last-Subject-Sequence``), so once a new owner has written
its takeover marker the old owner can append nothing more: it is fenced.
Snapshots of the quota book, with the journal sequence they include, are
kept in a KV bucket so that a takeover replays seconds of journal, not
minutes.

    JournalError
    └── Fenced      another replica appended to this partition's journal
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, Header
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import NotFoundError as StreamNotFound
from nats.js.kv import KeyValue

from shared.logs import get_logger

_log = get_logger(__name__)

WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code for a failed ``Nats-Expected-Last-Subject-Sequence``."""
REPLAY_IDLE_S = 2.0


class JournalError(Exception):
    """The journal could not take a batch before the owner's lease ran out."""


class Fenced(JournalError):
    """Another replica has written to this partition's journal since us."""


class Journal:
    """Append batches of decisions to one partition's journal subject."""

    def __init__(
        self, js: JetStreamContext, stream: str, subject: str, writer: str
    ) -> None:
        self._js = js
        self._stream = stream
        self.subject = subject
        # Unique per takeover: a message id reused within the duplicate
        # window would be acknowledged as a duplicate and never stored.
        self._writer = f"{writer}.{uuid.uuid4().hex[:12]}"
        self._batches = 0
        self.last_sequence = 0

    async def find_end(self) -> int:
        """Return the sequence of the subject's last message, 0 when none."""
        try:
            message = await self._js.get_last_msg(self._stream, self.subject)
        except StreamNotFound:
            return 0
        return message.seq or 0

    async def append(self, entries: list[Any], budget_s: float) -> int:
        """Append one batch after ``last_sequence``; return its sequence.

        A publish whose acknowledgement was lost is retried with the same
        ``Nats-Msg-Id``, so JetStream stores it once.
        """
        self._batches += 1
        headers = {
            Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(self.last_sequence),
            Header.MSG_ID.value: f"{self._writer}.{self.subject}.{self._batches}",
        }
        payload = orjson.dumps(entries)
        deadline = time.monotonic() + budget_s
        while True:
            try:
                ack = await self._js.publish(
                    self.subject, payload, timeout=1.0, headers=headers
                )
            except APIError as exc:
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    raise Fenced(f"{self.subject} was written by another") from exc
                await _retry_or_fail(deadline, exc)
            except (NatsTimeout, NatsError) as exc:
                await _retry_or_fail(deadline, exc)
            else:
                self.last_sequence = ack.seq
                return ack.seq

    async def replay(self, after: int, until: int) -> AsyncIterator[list[Any]]:
        """Yield the batches stored after sequence ``after`` up to ``until``."""
        if until <= after:
            return
        subscription = await self._js.subscribe(
            self.subject,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=after + 1),
        )
        try:
            while True:
                message = await subscription.next_msg(timeout=REPLAY_IDLE_S)
                yield orjson.loads(message.data)
                if message.metadata.sequence.stream >= until:
                    return
        finally:
            await subscription.unsubscribe()


async def _retry_or_fail(deadline: float, exc: Exception) -> None:
    if time.monotonic() >= deadline:
        raise JournalError(f"the journal did not take a batch: {exc}") from exc
    _log.warning("journal_retry", error=str(exc) or type(exc).__name__)
    await asyncio.sleep(0.05)


class Snapshots:
    """Keep each partition's latest snapshot, and the sequence it includes."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._revisions: dict[int, int] = {}

    async def load(self, partition: int) -> tuple[int, bytes | None]:
        """Return the journal sequence and the book bytes, or (0, None)."""
        key = f"p.{partition}"
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            self._revisions[partition] = 0
            return 0, None
        self._revisions[partition] = entry.revision or 0
        value = entry.value or b""
        return int.from_bytes(value[:8], "big"), zlib.decompress(value[8:])

    async def save(self, partition: int, sequence: int, book: bytes) -> None:
        """Store a snapshot unless a newer owner has stored one since."""
        value = sequence.to_bytes(8, "big") + zlib.compress(book, 1)
        last = self._revisions.get(partition, 0)
        try:
            revision = await self._kv.update(f"p.{partition}", value, last=last)
        except KeyWrongLastSequenceError:
            _log.info("snapshot_superseded", partition=partition)
            return
        except (NatsTimeout, NatsError) as exc:
            # The journal still holds everything: a takeover replays more.
            _log.warning("snapshot_failed", partition=partition, error=str(exc))
            return
        self._revisions[partition] = revision
