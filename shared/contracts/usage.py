"""Usage events (one per inference request) and usage queries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UsageStatus = Literal["ok", "error", "rate_limited"]
GroupKey = Literal["model", "project", "user", "application"]
Bucket = Literal["minute", "hour", "day"]


class UsageEvent(BaseModel):
    """What one inference request used, whatever its outcome."""

    request_id: str
    time: str
    model: str
    provider: str | None = None
    project: str | None = None
    user: str | None = None
    application: str | None = None
    status: UsageStatus
    error_code: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    usage_source: Literal["provider", "estimated"] = "estimated"


class UsageFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    project: str | None = None
    user: str | None = None
    application: str | None = None


class UsageQuery(BaseModel):
    """The body of ``byom.metering.usage``; every field optional."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    group_by: list[GroupKey] = Field(default_factory=list)
    bucket: Bucket | None = None
    from_: datetime | None = Field(default=None, alias="from")
    to: datetime | None = None
    filters: UsageFilters = Field(default_factory=UsageFilters)
