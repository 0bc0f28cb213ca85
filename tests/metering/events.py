"""Usage events made up for metering tests, and totals computed without SQL."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from shared.contracts.usage import UsageEvent

BASE = datetime(2026, 1, 1, 22, 30, tzinfo=UTC)
"""Events span the turn of a day, so day and hour buckets both split."""

MODELS = ("m-alpha", "m-beta")
PROJECTS = ("p1", "p2", "p3")
USERS = ("alice", "bob", "carol")
APPLICATIONS = ("workshop", "aip-logic", "chatbot-studio")
TOTALS = (
    "requests", "ok", "error", "rate_limited", "prompt_tokens",
    "completion_tokens", "reasoning_tokens", "cached_tokens",
)  # fmt: skip


def make_events(
    count: int,
    *,
    seed: int = 7,
    base: datetime = BASE,
    span: timedelta = timedelta(hours=3),
    prefix: str = "req",
) -> list[UsageEvent]:
    """Make varied events; some times carry a non-UTC offset."""
    rng = random.Random(seed)
    return [_event(rng, f"{prefix}-{i:06d}", base, span) for i in range(count)]


def _event(
    rng: random.Random, request_id: str, base: datetime, span: timedelta
) -> UsageEvent:
    index = int(request_id.rsplit("-", 1)[1])
    moment = base + timedelta(seconds=rng.uniform(0, span.total_seconds()))
    if index % 5 == 0:
        moment = moment.astimezone(timezone(timedelta(hours=2)))
    status = rng.choice(("ok", "ok", "ok", "error", "rate_limited"))
    stream = rng.random() < 0.4
    used = status == "ok" or rng.random() < 0.3
    return UsageEvent(
        request_id=request_id,
        time=moment.isoformat(timespec="milliseconds"),
        model=rng.choice(MODELS),
        provider="openai",
        project=rng.choice(PROJECTS),
        user=rng.choice(USERS),
        application=rng.choice(APPLICATIONS),
        status=status,
        error_code={"ok": None, "error": "provider_error"}.get(status, status),
        prompt_tokens=rng.randint(1, 900) if used else 0,
        completion_tokens=rng.randint(0, 400) if used else 0,
        reasoning_tokens=rng.randint(0, 50) if used else 0,
        cached_tokens=rng.randint(0, 20) if used else 0,
        latency_ms=round(rng.uniform(5, 3000), 3),
        ttft_ms=round(rng.uniform(1, 500), 3) if stream and used else None,
        stream=stream,
        usage_source="provider",
    )


def nearest_rank(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct * len(ordered) / 100)) - 1]


def bucket_start(event: UsageEvent, bucket: str | None) -> str | None:
    moment = datetime.fromisoformat(event.time).astimezone(UTC)
    if bucket is None:
        return None
    cut = {
        "minute": moment.replace(second=0, microsecond=0),
        "hour": moment.replace(minute=0, second=0, microsecond=0),
        "day": moment.replace(hour=0, minute=0, second=0, microsecond=0),
    }[bucket]
    return cut.isoformat()


def expected_rows(
    events: Iterable[UsageEvent], group_by: list[str], bucket: str | None
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Totals by group, computed in plain Python, keyed like ``row_key``."""
    groups: dict[tuple[Any, ...], list[UsageEvent]] = defaultdict(list)
    for event in events:
        key = tuple(getattr(event, name) for name in group_by)
        groups[(*key, bucket_start(event, bucket))].append(event)
    return {
        key: _totals(key, members, group_by, bucket) for key, members in groups.items()
    }


def _totals(
    key: tuple[Any, ...],
    members: list[UsageEvent],
    group_by: list[str],
    bucket: str | None,
) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(group_by, key, strict=False))
    if bucket:
        row["bucket_start"] = key[-1]
    row["requests"] = len(members)
    for status in ("ok", "error", "rate_limited"):
        row[status] = sum(event.status == status for event in members)
    for name in TOTALS[4:]:
        row[name] = sum(getattr(event, name) for event in members)
    latencies = [event.latency_ms for event in members]
    row["latency_ms_p50"] = nearest_rank(latencies, 50)
    row["latency_ms_p95"] = nearest_rank(latencies, 95)
    ttfts = [event.ttft_ms for event in members if event.ttft_ms is not None]
    if ttfts:
        row["ttft_ms_p50"] = nearest_rank(ttfts, 50)
    return row


def row_key(
    row: dict[str, Any], group_by: list[str], bucket: str | None
) -> tuple[Any, ...]:
    return (
        *(row[name] for name in group_by),
        row.get("bucket_start") if bucket else None,
    )
