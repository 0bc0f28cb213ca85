"""Subject, stream and bucket names of the contract, in one place.

Names are derived from a prefix (``byom`` in every deployment) so that a
test run can take a prefix of its own on a shared NATS server.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

LIMITER_PARTITIONS = 16
"""How many partitions the limiter's models are spread over. Fixed: changing
it moves models between partitions, which needs every limiter stopped."""


def limiter_partition(model_id: str) -> int:
    """Return the limiter partition that owns every window of a model."""
    return zlib.crc32(model_id.encode()) % LIMITER_PARTITIONS


def reservation_partition(reservation: str) -> int | None:
    """Return the partition a reservation (``"<p>.<id>"``) was granted by."""
    head, _, _ = reservation.partition(".")
    if not head.isdigit() or int(head) >= LIMITER_PARTITIONS:
        return None
    return int(head)


REGISTRY_OPERATIONS = (
    "source.create",
    "source.update",
    "source.delete",
    "source.get",
    "source.list",
    "source.share",
    "model.register",
    "model.update",
    "model.disable",
    "model.enable",
    "model.delete",
    "model.get",
    "model.list",
    "access.set",
    "access.get",
    "project_limits.set",
    "project_limits.get",
    "selector",
)


@dataclass(frozen=True, slots=True)
class Subjects:
    """Every name a service or client needs, for one subject prefix."""

    prefix: str = "byom"
    stream_prefix: str = ""

    def registry(self, operation: str) -> str:
        return f"{self.prefix}.registry.{operation}"

    @property
    def registry_all(self) -> str:
        return f"{self.prefix}.registry.>"

    @property
    def inference_chat(self) -> str:
        return f"{self.prefix}.inference.chat"

    @property
    def metering_usage(self) -> str:
        return f"{self.prefix}.metering.usage"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def limiter_acquire(self) -> str:
        """Name the acquire subjects as one, in metrics and logs."""
        return f"{self.prefix}.limiter.acquire"

    @property
    def limiter_settle(self) -> str:
        return f"{self.prefix}.limiter.settle"

    def limiter_acquire_at(self, partition: int) -> str:
        return f"{self.limiter_acquire}.{partition}"

    def limiter_settle_at(self, partition: int) -> str:
        return f"{self.limiter_settle}.{partition}"

    def limiter_journal(self, partition: int) -> str:
        return f"{self.prefix}.limiter.journal.{partition}"

    @property
    def limiter_journal_all(self) -> str:
        return f"{self.prefix}.limiter.journal.>"

    @property
    def limiter_journal_stream(self) -> str:
        return f"{self.stream_prefix}BYOM_LIMITER_JOURNAL"

    @property
    def limiter_owners_bucket(self) -> str:
        return self.bucket("BYOM_LIMITER_OWNERS")

    @property
    def limiter_members_bucket(self) -> str:
        return self.bucket("BYOM_LIMITER_MEMBERS")

    @property
    def limiter_snapshots_bucket(self) -> str:
        return self.bucket("BYOM_LIMITER_SNAPSHOTS")

    def registry_event(self, kind: str) -> str:
        return f"{self.prefix}.events.registry.{kind}"

    @property
    def registry_events(self) -> str:
        return f"{self.prefix}.events.registry.>"

    def usage(self, model: str) -> str:
        return f"{self.prefix}.usage.{model}"

    @property
    def usage_all(self) -> str:
        return f"{self.prefix}.usage.>"

    @property
    def registry_stream(self) -> str:
        return f"{self.stream_prefix}BYOM_REGISTRY"

    @property
    def usage_stream(self) -> str:
        return f"{self.stream_prefix}BYOM_USAGE"

    def bucket(self, name: str) -> str:
        """Name a KV bucket (``byom-limiter``, ...) under the stream prefix."""
        return f"{self.stream_prefix}{name}"
