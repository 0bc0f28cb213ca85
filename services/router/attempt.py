"""What one inference request did, gathered for its single usage event.

The pipeline opens an ``Attempt`` as soon as a request arrives and records
on it, step by step, the provider, the usage and the outcome; the usage
event is built from it once, at the very end, whatever happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from shared.contracts.usage import UsageEvent, UsageStatus
from shared.errors import ByomError, RateLimited

CLIENT_GONE = "client_gone"
"""The usage event's ``error_code`` for a stream its caller stopped reading."""
INTERNAL = "internal"


@dataclass(slots=True)
class Attempt:
    """One inference request on its way through the router."""

    request_id: str
    model: str
    user: str
    application: str | None
    project: str | None
    stream: bool
    started: float = 0.0
    provider: str | None = None
    estimated_prompt: int = 0
    status: UsageStatus = "error"
    error_code: str | None = INTERNAL
    usage: dict[str, Any] | None = None
    usage_source: Literal["provider", "estimated"] = "estimated"
    ttft_ms: float | None = None

    def __post_init__(self) -> None:
        self.started = self.started or time.perf_counter()

    def record_usage(self, usage: dict[str, Any], *, reported: bool) -> None:
        """Keep the counts, noting whether the provider reported them."""
        self.usage = usage
        self.usage_source = "provider" if reported else "estimated"

    def record_first_token(self) -> None:
        """Note the time to the first streamed chunk, once."""
        if self.ttft_ms is None:
            self.ttft_ms = _ms_since(self.started)

    def succeed(self) -> None:
        self.status, self.error_code = "ok", None

    def fail(self, error: ByomError) -> None:
        """Record a refusal or failure under its contract code."""
        self.status = "rate_limited" if isinstance(error, RateLimited) else "error"
        self.error_code = error.code

    def client_gone(self, usage_so_far: dict[str, Any]) -> None:
        """Record a stream its caller left, with what was produced until then."""
        self.status, self.error_code = "error", CLIENT_GONE
        if self.usage_source != "provider":
            self.record_usage(usage_so_far, reported=False)

    @property
    def used_tokens(self) -> int:
        """Prompt plus completion tokens, as reported or estimated."""
        usage = self.usage or {}
        return int(usage.get("prompt_tokens") or 0) + int(
            usage.get("completion_tokens") or 0
        )

    def event(self) -> UsageEvent:
        """Build the request's usage event."""
        usage = self.usage or {}
        completion_details = usage.get("completion_tokens_details") or {}
        prompt_details = usage.get("prompt_tokens_details") or {}
        return UsageEvent(
            request_id=self.request_id,
            time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            model=self.model,
            provider=self.provider,
            project=self.project,
            user=self.user,
            application=self.application,
            status=self.status,
            error_code=self.error_code,
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
            cached_tokens=prompt_details.get("cached_tokens") or 0,
            latency_ms=_ms_since(self.started),
            ttft_ms=self.ttft_ms,
            stream=self.stream,
            usage_source=self.usage_source,
        )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
