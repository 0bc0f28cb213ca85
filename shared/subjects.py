"""Subject, stream and bucket names of the contract, in one place.

Names are derived from a prefix (``byom`` in every deployment) so that a
test run can take a prefix of its own on a shared NATS server.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        return f"{self.prefix}.limiter.acquire"

    @property
    def limiter_settle(self) -> str:
        return f"{self.prefix}.limiter.settle"

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
