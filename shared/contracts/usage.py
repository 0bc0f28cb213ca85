"""Usage events (one per inference request), usage and headroom queries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

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


class _TimeRange(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: datetime | None = Field(default=None, alias="from")
    to: datetime | None = None

    @field_validator("to")
    @classmethod
    def _after_from(cls, to: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("from_")
        if to is not None and start is not None and _aware(to) <= _aware(start):
            raise ValueError("must be later than 'from'")
        return to


def _aware(moment: datetime) -> datetime:
    # Naive times are UTC, as the store reads them.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class UsageQuery(_TimeRange):
    """The body of ``byom.metering.usage``; every field optional."""

    group_by: list[GroupKey] = Field(default_factory=list)
    bucket: Bucket | None = None
    filters: UsageFilters = Field(default_factory=UsageFilters)


class HeadroomFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: str | None = None
    user: str | None = None


class HeadroomQuery(_TimeRange):
    """``{"view": "limits", "model": ...}`` on ``byom.metering.usage``.

    Per minute of the range (by default the last hour), what each level of
    the model's rate limits admitted against its rpm and tpm.
    """

    view: Literal["limits"]
    model: str = Field(min_length=1)
    filters: HeadroomFilters = Field(default_factory=HeadroomFilters)
