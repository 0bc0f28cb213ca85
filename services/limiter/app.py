"""Assemble the limiter: registry view for limits, partition leases, endpoints.

A limiter replica serves the partitions it holds a lease on (``ownership``),
each from a quota book rebuilt from its snapshot and journal (``partition``),
on the partition's own subjects (``handlers``). Any number of replicas can
run; each partition has one owner at a time (docs/limits.md).
"""

from __future__ import annotations

import asyncio
import time

from nats.errors import Error as NatsError

from services.limiter.handlers import PartitionHandlers, measured
from services.limiter.journal import Journal, JournalError, Snapshots
from services.limiter.ownership import Ownership
from services.limiter.partition import Partition, take_over
from shared.logs import get_logger
from shared.registry_view import RegistryFollower, RegistryView
from shared.service import Service
from shared.settings import Settings
from shared.transport import Endpoint

_log = get_logger(__name__)


class Limiter:
    """Take partitions over, serve them, and hand them over when asked."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.follower: RegistryFollower | None = None
        self.ownership: Ownership | None = None
        self.partitions: dict[int, Partition] = {}
        self._endpoints: dict[int, list[Endpoint]] = {}
        self._snapshots: Snapshots | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        js, subjects = self._service.js, self._service.subjects
        self.follower = RegistryFollower(self._service.nc, subjects)
        await self.follower.start()
        self._snapshots = Snapshots(
            await js.key_value(subjects.limiter_snapshots_bucket)
        )
        self.ownership = Ownership(
            await js.key_value(subjects.limiter_owners_bucket),
            await js.key_value(subjects.limiter_members_bucket),
            self._service.settings.instance,
            self._gain,
            self._lose,
        )
        await self.ownership.start()

    async def stop(self) -> None:
        if self.ownership is not None:
            await self.ownership.stop()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self.follower is not None:
            await self.follower.stop()

    def registry_version(self) -> int:
        return self.follower.view.version if self.follower else 0

    def view(self) -> RegistryView:
        if self.follower is None:
            raise RuntimeError("limiter is not started")
        return self.follower.view

    async def _gain(self, index: int) -> bool:
        """Rebuild a partition and open its subjects; False if it failed."""
        service, started = self._service, time.perf_counter()
        if self._snapshots is None:
            raise RuntimeError("limiter is not started")
        journal = Journal(
            service.js,
            service.subjects.limiter_journal_stream,
            service.subjects.limiter_journal(index),
            service.settings.instance,
        )
        try:
            partition = await take_over(
                index, journal, self._snapshots, service.settings.instance
            )
        except (JournalError, NatsError) as exc:
            _log.warning("takeover_failed", partition=index, error=str(exc))
            return False
        partition.on_lost = self._fenced
        self.partitions[index] = partition
        await self._open(index, PartitionHandlers(partition, self.view))
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        _log.info("partition_taken", partition=index, ms=elapsed_ms)
        return True

    async def _open(self, index: int, handlers: PartitionHandlers) -> None:
        subjects, metrics = self._service.subjects, self._service.metrics
        endpoints = [
            Endpoint(
                f"{subject}.{index}",
                # Measured under the shared subject: one series per endpoint,
                # not one per partition.
                measured(handler, subject, metrics),
                # No queue group: only the owner subscribes, and during a
                # handover the fenced owner stays silent.
                queue=None,
                verifier=None,
                span_name=f"limiter limiter.{name}",
                quiet=True,
            )
            for subject, handler, name in (
                (subjects.limiter_acquire, handlers.acquire, "acquire"),
                (subjects.limiter_settle, handlers.settle, "settle"),
            )
        ]
        for endpoint in endpoints:
            await endpoint.start(self._service.nc)
        self._endpoints[index] = endpoints

    async def _lose(self, index: int) -> None:
        """Stop serving a partition: close its subjects, finish its batch."""
        for endpoint in self._endpoints.pop(index, []):
            await endpoint.stop()
        partition = self.partitions.pop(index, None)
        if partition is not None:
            await partition.drain()

    def _fenced(self, index: int) -> None:
        if self.ownership is not None:
            self.ownership.lost(index)
        task = asyncio.create_task(self._lose(index))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def build(settings: Settings) -> Service:
    service = Service("limiter", settings)
    limiter = Limiter(service)
    service.components.append(limiter)
    service.registry_version = limiter.registry_version
    return service
