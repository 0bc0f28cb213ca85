"""An in-memory copy of the registry, built from the ``BYOM_REGISTRY`` stream.

The router and the limiter answer from this view, so the inference path
never asks the registry anything. ``RegistryFollower`` replays the stream
from its first event at start, returns once it has caught up, and then
applies each new event as it arrives (within milliseconds of the change).

Events reach a follower two ways. The stream's ordered consumer is the
record: it replays, and it fills every gap. The registry's publish is also
seen by a plain subscription on the same subjects, which keeps arriving
while a lost node's consumer is being replaced (seconds, when the JetStream
meta leader was on that node). An event from either path is applied only
in version order; one that arrives early waits for the versions before it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from shared.contracts.events import RegistryEvent
from shared.logs import get_logger
from shared.subjects import Subjects

_log = get_logger(__name__)

EARLY_EVENTS_KEPT = 1024
"""Events held while an earlier version is missing; more than this and the
newest wait for the stream instead."""

HEARTBEAT_S = 0.5
"""Idle heartbeat of the follower's consumer. A follower whose server died
notices the silence after two missed beats and resubscribes elsewhere, so
the one-second promise of the contract holds through a node failure."""


@dataclass(slots=True)
class RegistryView:
    """Sources, models, access and project limits as of ``version``."""

    version: int = 0
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_rids: dict[str, str] = field(default_factory=dict)
    access: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    project_limits: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def model(self, name: str) -> dict[str, Any] | None:
        """Find an enabled or disabled model by the name clients use."""
        rid = self.model_rids.get(name)
        return None if rid is None else self.models[rid]

    def apply(self, event: RegistryEvent) -> None:
        """Apply one event; events older than the view are ignored."""
        if event.version <= self.version:
            return
        handler = getattr(self, "_on_" + event.kind.replace(".", "_"))
        handler(event.data)
        self.version = event.version

    def _on_source_upserted(self, data: dict[str, Any]) -> None:
        self.sources[data["rid"]] = data

    def _on_source_deleted(self, data: dict[str, Any]) -> None:
        self.sources.pop(data["rid"], None)

    def _on_model_upserted(self, data: dict[str, Any]) -> None:
        previous = self.models.get(data["rid"])
        if previous is not None:
            self.model_rids.pop(previous["name"], None)
        self.models[data["rid"]] = data
        self.model_rids[data["name"]] = data["rid"]

    def _on_model_deleted(self, data: dict[str, Any]) -> None:
        previous = self.models.pop(data["rid"], None)
        if previous is not None:
            self.model_rids.pop(previous["name"], None)

    def _on_access_set(self, data: dict[str, Any]) -> None:
        self.access = data

    def _on_project_limits_set(self, data: dict[str, Any]) -> None:
        self.project_limits[(data["model"], data["project"])] = data


class RegistryFollower:
    """Keep a ``RegistryView`` current by following the registry stream."""

    def __init__(self, nc: NatsClient, subjects: Subjects) -> None:
        self.view = RegistryView()
        self._nc = nc
        self._js = nc.jetstream()
        self._subjects = subjects
        self._applied_seq = 0
        self._caught_up = asyncio.Event()
        self._target_seq = 0
        self._subscription: Any = None
        self._live: Any = None
        self._early: dict[int, RegistryEvent] = {}
        self._applied = asyncio.Condition()

    async def start(self, timeout: float = 30.0) -> None:
        """Replay the stream from the start and return once caught up."""
        self._target_seq = await self._last_sequence()
        if self._target_seq == 0:
            self._caught_up.set()
        self._live = await self._nc.subscribe(
            self._subjects.registry_events, cb=self._on_live_message
        )
        self._subscription = await self._js.subscribe(
            self._subjects.registry_events,
            stream=self._subjects.registry_stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=self._on_message,
            idle_heartbeat=HEARTBEAT_S,
        )
        await asyncio.wait_for(self._caught_up.wait(), timeout)
        _log.info("registry_view_ready", registry_version=self.view.version)

    async def wait_for_version(self, version: int, timeout: float) -> None:
        """Return once the view has applied ``version``; raise on timeout."""
        async with self._applied:
            await asyncio.wait_for(
                self._applied.wait_for(lambda: self.view.version >= version), timeout
            )

    async def stop(self) -> None:
        for subscription in (self._subscription, self._live):
            if subscription is not None:
                await subscription.unsubscribe()
        self._subscription = self._live = None

    async def _last_sequence(self) -> int:
        try:
            info = await self._js.stream_info(self._subjects.registry_stream)
        except NotFoundError:
            return 0
        return info.state.last_seq

    async def _on_message(self, msg: Any) -> None:
        # The stream is the record: whatever it delivers next is applied.
        event = RegistryEvent.model_validate(orjson.loads(msg.data))
        self.view.apply(event)
        self._apply_early()
        self._applied_seq = msg.metadata.sequence.stream
        if self._applied_seq >= self._target_seq:
            self._caught_up.set()
        await self._notify()
        _log.debug("registry_event_applied", kind=event.kind, version=event.version)

    async def _on_live_message(self, msg: Any) -> None:
        try:
            event = RegistryEvent.model_validate(orjson.loads(msg.data))
        except (orjson.JSONDecodeError, ValidationError):
            # Only the stream's copy counts; a bad live one is left to it.
            _log.warning("registry_live_event_unreadable", subject=msg.subject)
            return
        if event.version > self.view.version + 1:
            if len(self._early) < EARLY_EVENTS_KEPT:
                self._early[event.version] = event
            return
        self.view.apply(event)  # the next version, or one already applied
        self._apply_early()
        await self._notify()

    def _apply_early(self) -> None:
        """Apply the early events the view has now reached, drop stale ones."""
        while (early := self._early.pop(self.view.version + 1, None)) is not None:
            self.view.apply(early)
        if self._early and min(self._early) <= self.view.version:
            version = self.view.version
            self._early = {v: e for v, e in self._early.items() if v > version}

    async def _notify(self) -> None:
        async with self._applied:
            self._applied.notify_all()
