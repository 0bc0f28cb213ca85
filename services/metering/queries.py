"""Usage queries: totals grouped by model, project, user, application, time.

One SQL statement answers a query. Latency percentiles are exact
nearest-rank values: SQLite ranks each group's latencies with a window
function and the row whose rank is ``ceil(p * n / 100)`` is the answer, so
no sample ever leaves the database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.metering.store import UsageStore, utc_text
from shared.contracts.usage import UsageQuery
from shared.identity import Principal

# Stored times are UTC ISO 8601 strings: a bucket is a prefix of one.
_BUCKET_PREFIX = {"minute": 16, "hour": 13, "day": 10}
_BUCKET_SUFFIX = {
    "minute": ":00+00:00",
    "hour": ":00:00+00:00",
    "day": "T00:00:00+00:00",
}
DEFAULT_WINDOW = timedelta(hours=24)
_TOTALS = {
    "requests": "COUNT(*)",
    "ok": "SUM(status = 'ok')",
    "error": "SUM(status = 'error')",
    "rate_limited": "SUM(status = 'rate_limited')",
    "prompt_tokens": "SUM(prompt_tokens)",
    "completion_tokens": "SUM(completion_tokens)",
    "reasoning_tokens": "SUM(reasoning_tokens)",
    "cached_tokens": "SUM(cached_tokens)",
}


def _rank(pct: int, count: str) -> str:
    """SQL for the nearest rank ``ceil(pct * n / 100)``, in integers."""
    return f"(({pct} * {count} + 99) / 100)"


_SAMPLE_COLUMNS = (
    "status, prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, "
    "latency_ms, ttft_ms"
)
_WHOLE = "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
_PERCENTILES = {
    "latency_ms_p50": f"MIN(CASE WHEN lat_rank = {_rank(50, 'n')} THEN latency_ms END)",
    "latency_ms_p95": f"MIN(CASE WHEN lat_rank = {_rank(95, 'n')} THEN latency_ms END)",
    "ttft_ms_p50": "MIN(CASE WHEN ttft_ms IS NOT NULL "
    f"AND ttft_rank = {_rank(50, 'n_ttft')} THEN ttft_ms END)",
}


def time_range(query_from: datetime | None, query_to: datetime | None) -> list[str]:
    """Resolve a query's range, by default the last 24 hours, as stored text."""
    now = datetime.now(UTC)
    end = query_to or now + timedelta(seconds=1)
    start = query_from or end - DEFAULT_WINDOW
    return [utc_text(start), utc_text(end)]


def where_clause(
    query_from: datetime | None,
    query_to: datetime | None,
    filters: dict[str, str],
    caller: Principal,
) -> tuple[str, list[Any]]:
    """Build the WHERE clause; a non-administrator only ever sees their own."""
    clauses, params = ["time >= ?", "time < ?"], time_range(query_from, query_to)
    filters = dict(filters)
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


def usage_sql(query: UsageQuery, caller: Principal) -> tuple[str, list[Any]]:
    """Write the one statement that answers a usage query."""
    where, params = where_clause(
        query.from_, query.to, query.filters.model_dump(exclude_none=True), caller
    )
    keys = _keys(query)
    aliases = [f"k{i}" for i in range(len(keys))]
    partition = f"PARTITION BY {', '.join(keys)} " if keys else ""
    # Only fixed column names and expressions are formatted into the SQL;
    # every value the caller sent is a bound parameter.
    ranked = ", ".join(
        [
            *(f"{key} AS {alias}" for key, alias in zip(keys, aliases, strict=True)),
            _SAMPLE_COLUMNS,
            "ROW_NUMBER() OVER lat AS lat_rank",
            "COUNT(*) OVER lat AS n",
            "ROW_NUMBER() OVER ttft AS ttft_rank",
            "COUNT(ttft_ms) OVER ttft AS n_ttft",
        ]
    )
    # A whole-partition frame lets each count share its window's sort.
    windows = (
        f"WINDOW lat AS ({partition}ORDER BY latency_ms {_WHOLE}), "
        f"ttft AS ({partition}ORDER BY ttft_ms IS NULL, ttft_ms {_WHOLE})"
    )
    columns = ", ".join([*aliases, *_TOTALS.values(), *_PERCENTILES.values()])
    sql = (
        f"SELECT {columns} FROM "  # noqa: S608
        f"(SELECT {ranked} FROM usage WHERE {where} {windows})"
    )
    if keys:
        sql += f" GROUP BY {', '.join(aliases)} ORDER BY {', '.join(aliases)}"
    return sql, params


async def usage_rows(
    store: UsageStore, query: UsageQuery, caller: Principal
) -> list[dict[str, Any]]:
    """Answer a usage query for this caller (non-admins see only their own)."""
    sql, params = usage_sql(query, caller)
    width = len(_keys(query))
    return [
        _row(query, values, width)
        for values in await store.select(sql, params)
        if values[width]
    ]


def _row(query: UsageQuery, values: tuple[Any, ...], width: int) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(dict.fromkeys(query.group_by), values, strict=False))
    if query.bucket:
        row["bucket_start"] = values[width - 1] + _BUCKET_SUFFIX[query.bucket]
    totals = values[width : width + len(_TOTALS)]
    row.update(
        {name: int(total or 0) for name, total in zip(_TOTALS, totals, strict=True)}
    )
    p50, p95, ttft = values[width + len(_TOTALS) :]
    row["latency_ms_p50"] = p50
    row["latency_ms_p95"] = p95
    if ttft is not None:
        row["ttft_ms_p50"] = ttft
    return row
