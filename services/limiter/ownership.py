"""Which limiter replica owns which partition: leases in JetStream KV.

Each replica renews a member key and one lease key per partition it owns
(``p.<p>`` in the owners bucket), every ``RENEW_S``, with a compare-and-set
on the key's revision. A lease is lapsed when its revision has not moved for
``LEASE_S`` as timed by the replica watching it: no replica reads another's
clock. Replicas aim at an even share of the partitions among the live
members; an owner above its share hands partitions over (drain, then delete
the lease), and a replica below it claims lapsed or free leases.

A lease only decides who tries to serve a partition. What keeps two owners
from both admitting calls is the journal's fencing (``journal.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import zlib
from collections.abc import Awaitable, Callable

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from shared.logs import get_logger
from shared.subjects import LIMITER_PARTITIONS

_log = get_logger(__name__)

LEASE_S = 2.0
RENEW_S = 0.5
STOP_WAIT_S = 10.0
"""Longest wait for a tick in progress at stop (its NATS calls time out)."""

Gain = Callable[[int], Awaitable[bool]]
Lose = Callable[[int], Awaitable[None]]


class _Watched:
    """Revisions of keys as last seen, and since when (monotonic)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float]] = {}

    def lapsed(self, key: str, revision: int) -> bool:
        """Tell whether ``key`` has stayed at ``revision`` for a whole lease."""
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is None or seen[0] != revision:
            self._seen[key] = (revision, now)
            return False
        return now - seen[1] >= LEASE_S


class Ownership:
    """Keep this replica's share of partition leases, and tell who owns them."""

    def __init__(
        self,
        owners: KeyValue,
        members: KeyValue,
        instance: str,
        on_gain: Gain,
        on_lose: Lose,
    ) -> None:
        self._owners = owners
        self._members = members
        self._instance = instance
        self._member_key = "m." + _key_safe(instance)
        self._on_gain = on_gain
        self._on_lose = on_lose
        self._owned: dict[int, tuple[int, float]] = {}
        self._member_revision = 0
        self._watched = _Watched()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Replicas walk the partitions from different points, so that
        # several starting at once rarely race for the same lease.
        start = zlib.crc32(instance.encode()) % LIMITER_PARTITIONS
        self._order = [
            (start + i) % LIMITER_PARTITIONS for i in range(LIMITER_PARTITIONS)
        ]

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)

    async def start(self) -> None:
        await self.tick()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Hand every partition over at once, so a successor need not wait."""
        # The loop is asked to stop rather than cancelled: nats-py swallows
        # a cancellation that lands in a publish, and the loop would go on.
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
            self._task.cancel()
        for partition in list(self._owned):
            await self._release(partition)
        try:
            await self._members.delete(self._member_key)
        except NatsError as exc:
            _log.warning("member_delete_failed", error=str(exc))

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), RENEW_S)
            if self._stopping.is_set():
                return
            try:
                await self.tick()
            except (NatsTimeout, NatsError) as exc:
                _log.warning("ownership_tick_failed", error=str(exc))
            except Exception:
                # Leases must keep being renewed whatever one tick met.
                _log.exception("ownership_tick_crashed")

    async def tick(self) -> None:
        """Renew what we hold, then give away or take to reach our share."""
        await self._renew_member()
        await self._renew_leases()
        share = math.ceil(LIMITER_PARTITIONS / await self._live_members())
        for partition in sorted(self._owned, reverse=True)[share:]:
            await self._release(partition)
        # Every lease is looked at on every tick, even with our share full,
        # so that one whose owner died is known lapsed as soon as it is.
        for partition in self._order:
            if partition in self._owned:
                continue
            takeable = await self._takeable(partition)
            if takeable is not None and len(self._owned) < share:
                await self._claim(partition, takeable)

    def lost(self, partition: int) -> None:
        """Forget a partition whose journal fenced us out (no delete)."""
        self._owned.pop(partition, None)

    async def _renew_member(self) -> None:
        self._member_revision = await self._members.put(self._member_key, b"")

    async def _live_members(self) -> int:
        try:
            keys = await self._members.keys()
        except NoKeysError:
            return 1
        live = 0
        for key in keys:
            try:
                entry = await self._members.get(key)
            except KeyNotFoundError:
                continue
            if key == self._member_key or not self._watched.lapsed(
                key, entry.revision or 0
            ):
                live += 1
        return max(live, 1)

    async def _renew_leases(self) -> None:
        for partition, (revision, renewed) in list(self._owned.items()):
            key = f"p.{partition}"
            try:
                new = await self._owners.update(key, self._value(), last=revision)
            except KeyWrongLastSequenceError:
                _log.warning("lease_lost", partition=partition)
                self._owned.pop(partition)
                await self._on_lose(partition)
                continue
            except (NatsTimeout, NatsError) as exc:
                if time.monotonic() - renewed > LEASE_S * 0.75:
                    _log.warning("lease_expiring", partition=partition, error=str(exc))
                    self._owned.pop(partition)
                    await self._on_lose(partition)
                continue
            self._owned[partition] = (new, time.monotonic())

    async def _takeable(self, partition: int) -> int | None:
        """Return the revision to take a lease over from (0: free), or None."""
        key = f"p.{partition}"
        try:
            entry = await self._owners.get(key)
        except KeyNotFoundError:
            return 0
        revision = entry.revision or 0
        return revision if self._watched.lapsed(key, revision) else None

    async def _claim(self, partition: int, last: int) -> None:
        revision = await self._take(f"p.{partition}", last or None)
        if revision is None:
            return
        self._owned[partition] = (revision, time.monotonic())
        if not await self._on_gain(partition):
            await self._release(partition)

    async def _take(self, key: str, last: int | None) -> int | None:
        try:
            if last is None:
                # create also takes a key whose last entry is a delete marker.
                return await self._owners.create(key, self._value())
            return await self._owners.update(key, self._value(), last=last)
        except KeyWrongLastSequenceError:
            return None

    async def _release(self, partition: int) -> None:
        revision, _ = self._owned.pop(partition, (0, 0.0))
        await self._on_lose(partition)
        try:
            await self._owners.delete(f"p.{partition}", last=revision)
        except (NatsTimeout, NatsError) as exc:
            # The lease then lapses on its own.
            _log.warning("lease_release_failed", partition=partition, error=str(exc))
        _log.info("partition_released", partition=partition)

    def _value(self) -> bytes:
        return self._instance.encode()


def _key_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
