"""Usage queries: totals grouped by model, project, user, application, time.

Counts and sums come from SQL; latency percentiles are computed over each
group's values in Python (nearest-rank), which is exact.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from services.metering.store import UsageStore
from shared.contracts.usage import UsageQuery
from shared.identity import Principal

# ISO 8601 UTC strings sort as time does; a bucket is a prefix of one.
_BUCKET_PREFIX = {"minute": 16, "hour": 13, "day": 10}
_BUCKET_SUFFIX = {
    "minute": ":00+00:00",
    "hour": ":00:00+00:00",
    "day": "T00:00:00+00:00",
}
_SUMS = (
    "COUNT(*)",
    "SUM(status = 'ok')",
    "SUM(status = 'error')",
    "SUM(status = 'rate_limited')",
    "SUM(prompt_tokens)",
    "SUM(completion_tokens)",
    "SUM(reasoning_tokens)",
    "SUM(cached_tokens)",
)
_TOTALS = (
    "requests",
    "ok",
    "error",
    "rate_limited",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _where(query: UsageQuery, caller: Principal) -> tuple[str, list[Any]]:
    now = datetime.now(UTC)
    start = query.from_ or now - timedelta(hours=24)
    end = query.to or now + timedelta(seconds=1)
    clauses, params = ["time >= ?", "time < ?"], [_iso(start), _iso(end)]
    filters = query.filters.model_dump(exclude_none=True)
    if not caller.is_admin:
        filters["user"] = caller.user
    for column, value in filters.items():
        clauses.append(f"{column} = ?")
        params.append(value)
    return " AND ".join(clauses), params


def _keys(query: UsageQuery) -> list[str]:
    keys: list[str] = list(dict.fromkeys(query.group_by))
    if query.bucket:
        keys.append(f"substr(time, 1, {_BUCKET_PREFIX[query.bucket]})")
    return keys


async def usage_rows(
    store: UsageStore, query: UsageQuery, caller: Principal
) -> list[dict[str, Any]]:
    """Answer a usage query for this caller (non-admins see only their own)."""
    where, params = _where(query, caller)
    keys = _keys(query)
    group = f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}" if keys else ""
    # Only fixed column names and expressions are formatted into the SQL;
    # every value the caller sent is a bound parameter.
    sums = ", ".join([*keys, *_SUMS])
    samples = ", ".join([*keys, "latency_ms", "ttft_ms"])
    totals = await store.select(
        f"SELECT {sums} FROM usage WHERE {where}{group}",  # noqa: S608
        params,
    )
    latencies = _latencies_by_group(
        await store.select(f"SELECT {samples} FROM usage WHERE {where}", params),  # noqa: S608
        len(keys),
    )
    return [
        _row(query, keys, values, latencies.get(tuple(values[: len(keys)]), ([], [])))
        for values in totals
        if values[len(keys)]
    ]


def _latencies_by_group(
    samples: list[tuple[Any, ...]], width: int
) -> dict[tuple[Any, ...], tuple[list[float], list[float]]]:
    groups: dict[tuple[Any, ...], tuple[list[float], list[float]]] = {}
    for sample in samples:
        latency, ttft = sample[width], sample[width + 1]
        bucket = groups.setdefault(tuple(sample[:width]), ([], []))
        bucket[0].append(latency)
        if ttft is not None:
            bucket[1].append(ttft)
    return groups


def _row(
    query: UsageQuery,
    keys: list[str],
    values: tuple[Any, ...],
    latencies: tuple[list[float], list[float]],
) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(dict.fromkeys(query.group_by), values, strict=False))
    if query.bucket:
        row["bucket_start"] = values[len(keys) - 1] + _BUCKET_SUFFIX[query.bucket]
    totals = values[len(keys) :]
    row.update(
        {name: int(total or 0) for name, total in zip(_TOTALS, totals, strict=True)}
    )
    row["latency_ms_p50"] = percentile(latencies[0], 50)
    row["latency_ms_p95"] = percentile(latencies[0], 95)
    if latencies[1]:
        row["ttft_ms_p50"] = percentile(latencies[1], 50)
    return row


def percentile(values: list[float], pct: float) -> float | None:
    """Return the nearest-rank percentile of the values, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])
