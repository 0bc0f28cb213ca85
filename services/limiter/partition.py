"""One partition owned by this limiter: its quota book, journaled.

The owner decides in memory with the quota book and appends each decision to
the partition's journal. A grant is answered only once the batch holding it
is acknowledged, so a router never holds a grant a successor would not
replay. Decisions made while a batch is in flight go into the next one:
batches grow with load, and the journal costs one publish per batch.

A partition is built by ``take_over``: load the latest snapshot, replay the
journal after it, then write a takeover marker that fences any previous
owner out of the journal.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.limiter.journal import Fenced, Journal, JournalError, Snapshots
from services.limiter.limits import Limits
from services.limiter.quota import Denial, Grant, QuotaBook
from services.limiter.windows import HELD_SECONDS
from shared.contracts.limiter import QuotaRequest
from shared.logs import get_logger
from shared.subjects import LIMITER_PARTITIONS

_log = get_logger(__name__)

SNAPSHOT_EVERY_S = 5.0
JOURNAL_BUDGET_S = 1.5
"""How long a batch is retried before the owner steps down: less than the
lease, so that no successor can be serving while we still retry."""
MAX_BATCH = 2000
SETTLE_LINGER_S = 0.1
"""How long a settlement may wait to share a journal batch with the next
grant, rather than cost a journal round trip of its own. A settlement lost
with its owner only leaves a reservation at its estimate: that can refuse
more, never admit more."""
"""Decisions per journal message; a batch of grants is about 100 bytes each."""
TAKEOVER_ATTEMPTS = 5


@dataclass(slots=True)
class _Admitted:
    """A grant made for a request id, and whether its batch is acknowledged."""

    reservation: str
    journaled: asyncio.Future[bool]


class Partition:
    """Decide quota for the models of one partition; journal every change."""

    def __init__(
        self, index: int, journal: Journal, snapshots: Snapshots, book: QuotaBook
    ) -> None:
        self.index = index
        self._journal = journal
        self._snapshots = snapshots
        self._book = book
        self._floor = 0.0
        self._pending: list[list[Any]] = []
        self._waiters: list[asyncio.Future[bool]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._by_request: dict[str, _Admitted | str] = {}
        self._request_order: deque[tuple[int, str]] = deque()
        # Staggered, so that partitions never snapshot in the same tick.
        self._next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S * (
            1 + index / LIMITER_PARTITIONS
        )
        self.closed = False
        self.on_lost: Callable[[int], None] | None = None

    def now(self) -> float:
        """Return the wall clock, never earlier than a time already used."""
        self._floor = max(time.time(), self._floor)
        return self._floor

    async def acquire(
        self, request: QuotaRequest, limits: Limits
    ) -> str | Denial | None:
        """Return a reservation once journaled, a denial, or None if fenced.

        A request id already granted gets the same reservation: the router
        retries timeouts, and a retry must not be charged twice.
        """
        known = self._admitted(request.request_id)
        if isinstance(known, str):
            return known
        if known is None:
            outcome = self._decide(request, limits)
            if isinstance(outcome, Denial):
                return outcome
            known = outcome
        if not await asyncio.shield(known.journaled):
            return None
        # Only the reservation is kept from now on: a future per grant held
        # for a minute made the garbage collector's full passes long.
        self._by_request[request.request_id] = known.reservation
        return known.reservation

    def settle(self, reservation_id: int, tokens: int, ok: bool) -> None:
        """Apply a settlement (or a refund when not ``ok``) and journal it."""
        now = self.now()
        if ok:
            changed = self._book.settle(now, reservation_id, tokens)
            entry: list[Any] = ["s", now, reservation_id, tokens]
        else:
            changed = self._book.refund(now, reservation_id)
            entry = ["r", now, reservation_id]
        if changed:
            self._record(entry, urgent=False)

    def replay(self, batch: list[list[Any]]) -> None:
        """Apply a journal batch written by this partition's previous owner."""
        for entry in batch:
            kind, now = entry[0], entry[1]
            self._floor = max(self._floor, now)
            if kind == "g":
                self._replay_grant(entry)
            elif kind == "s":
                self._book.settle(now, entry[2], entry[3])
            elif kind == "r":
                self._book.refund(now, entry[2])

    def _replay_grant(self, entry: list[Any]) -> None:
        _, now, reservation_id, second, model_id, project, user, tokens, request_id = (
            entry
        )
        grant = Grant(reservation_id, second, model_id, project, user, tokens)
        # A grant's second can be ahead of the time recorded with it when the
        # book had already seen a later time (from a denial).
        self._book.apply_grant(max(now, second), grant)
        self._remember(request_id, f"{self.index}.{reservation_id}", second)

    def _decide(self, request: QuotaRequest, limits: Limits) -> _Admitted | Denial:
        now = self.now()
        outcome = self._book.acquire(
            now,
            request.model,
            request.project,
            request.user,
            tokens=request.tokens,
            limits=limits,
        )
        if isinstance(outcome, Denial):
            return outcome
        journaled = self._record(_grant_entry(now, outcome, request.request_id))
        admitted = _Admitted(f"{self.index}.{outcome.reservation_id}", journaled)
        self._remember(request.request_id, admitted, outcome.second)
        return admitted

    def _admitted(self, request_id: str) -> _Admitted | str | None:
        cutoff = int(self.now()) - HELD_SECONDS
        order = self._request_order
        while order and order[0][0] <= cutoff:
            self._by_request.pop(order.popleft()[1], None)
        return self._by_request.get(request_id)

    def _remember(
        self, request_id: str, admitted: _Admitted | str, second: int
    ) -> None:
        self._by_request[request_id] = admitted
        self._request_order.append((second, request_id))

    def _record(self, entry: list[Any], *, urgent: bool = True) -> asyncio.Future[bool]:
        """Queue an entry for the journal; a grant's reply waits for it."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._pending.append(entry)
        self._waiters.append(waiter)
        if urgent:
            self._start_flush()
        elif self._linger is None:
            self._linger = loop.call_later(SETTLE_LINGER_S, self._start_flush)
        return waiter

    def _start_flush(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending and not self.closed:
            entries, waiters = self._pending[:MAX_BATCH], self._waiters[:MAX_BATCH]
            del self._pending[:MAX_BATCH], self._waiters[:MAX_BATCH]
            # Taken as the batch is sealed, the snapshot holds exactly what
            # the journal will hold up to this batch's sequence.
            snapshot = None if self._pending else self._snapshot_if_due()
            try:
                sequence = await self._journal.append(entries, JOURNAL_BUDGET_S)
            except JournalError as exc:
                self._fail(waiters, exc)
                return
            _resolve(waiters, True)
            if snapshot is not None:
                await self._snapshots.save(self.index, sequence, snapshot)

    def _snapshot_if_due(self) -> bytes | None:
        if time.monotonic() < self._next_snapshot:
            return None
        self._next_snapshot = time.monotonic() + SNAPSHOT_EVERY_S
        return self._book.snapshot()

    def _fail(self, waiters: list[asyncio.Future[bool]], exc: JournalError) -> None:
        reason = "fenced" if isinstance(exc, Fenced) else "journal_unavailable"
        _log.warning("partition_lost", partition=self.index, reason=reason)
        self.close()
        _resolve(waiters, False)
        if self.on_lost is not None:
            self.on_lost(self.index)

    def close(self) -> None:
        """Stop deciding: every grant not yet journaled is never answered."""
        self.closed = True
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        _resolve(self._waiters, False)
        self._pending.clear()
        self._waiters.clear()

    async def drain(self) -> None:
        """Journal what is queued, so a handover loses no decision."""
        self._start_flush()
        if self._flusher is not None:
            await asyncio.wait({self._flusher}, timeout=JOURNAL_BUDGET_S)
        self.close()


def _resolve(waiters: list[asyncio.Future[bool]], value: bool) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(value)


def _grant_entry(now: float, grant: Grant, request_id: str) -> list[Any]:
    reservation_id, second, model_id, project, user, tokens = grant
    return ["g", now, reservation_id, second, model_id, project, user, tokens,
            request_id]  # fmt: skip


async def take_over(
    index: int, journal: Journal, snapshots: Snapshots, writer: str
) -> Partition:
    """Rebuild a partition from its snapshot and journal, then fence the rest.

    Raises ``JournalError`` when the journal kept moving under us (another
    replica still writing) after a few attempts.
    """
    sequence, book = await _restored(snapshots, index)
    partition = Partition(index, journal, snapshots, book)
    for _ in range(TAKEOVER_ATTEMPTS):
        end = await journal.find_end()
        async for batch in journal.replay(sequence, end):
            partition.replay(batch)
        sequence = max(sequence, end)
        journal.last_sequence = end
        try:
            await journal.append([["t", partition.now(), writer]], JOURNAL_BUDGET_S)
        except Fenced:
            continue
        return partition
    raise JournalError(f"partition {index} kept changing during takeover")


async def _restored(snapshots: Snapshots, index: int) -> tuple[int, QuotaBook]:
    """Return the latest snapshot's book and sequence; (0, empty) if none.

    An unreadable snapshot is skipped: the whole journal (ten minutes, far
    more than a window) is replayed instead.
    """
    try:
        sequence, data = await snapshots.load(index)
        if data is None:
            return 0, QuotaBook()
        return sequence, QuotaBook.restore(data)
    except (ValueError, zlib.error):
        _log.exception("snapshot_unreadable", partition=index)
        return 0, QuotaBook()
