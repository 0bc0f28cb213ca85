"""Usage records in SQLite: one row per request id, whatever arrives twice.

Times are stored as UTC ISO 8601 strings with milliseconds
(``2026-01-02T03:04:05.678+00:00``), whatever offset the event was written
with, so that string order is time order and a time bucket is a prefix.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from shared.contracts.usage import UsageEvent

COLUMNS = (
    "request_id",
    "time",
    "model",
    "provider",
    "project",
    "user",
    "application",
    "status",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "latency_ms",
    "ttft_ms",
    "stream",
    "usage_source",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    request_id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT,
    project TEXT,
    user TEXT,
    application TEXT,
    status TEXT NOT NULL,
    error_code TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    stream INTEGER NOT NULL,
    usage_source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_time ON usage (time);
CREATE INDEX IF NOT EXISTS usage_by_model_time ON usage (model, time);
"""

_INSERT = (
    f"INSERT OR IGNORE INTO usage ({', '.join(COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' for _ in COLUMNS)})"
)


class StoreError(Exception):
    """The usage database refused a read or a write."""


class UsageStore:
    """The metering database."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("usage store is not open")
        return self._db

    async def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(_SCHEMA)
        await self._db.commit()

    async def stop(self) -> None:
        if self._db is not None:
            # Lets the query planner learn from this session's queries.
            await self._db.execute("PRAGMA optimize")
            await self._db.close()
            self._db = None

    async def insert(self, events: Sequence[UsageEvent]) -> int:
        """Store events not seen before, in one transaction; return how many."""
        rows = [_row(event) for event in events]
        before = self.db.total_changes
        try:
            await self.db.executemany(_INSERT, rows)
            await self.db.commit()
        except sqlite3.Error as exc:
            await self.db.rollback()
            raise StoreError(f"cannot store usage events: {exc}") from exc
        return self.db.total_changes - before

    async def select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with self.db.execute(sql, params) as cursor:
                return [tuple(row) for row in await cursor.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read usage: {exc}") from exc


def utc_text(moment: datetime) -> str:
    """Write a time the way the store keeps it (naive times are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _row(event: UsageEvent) -> tuple[Any, ...]:
    values = event.model_dump()
    values["time"] = utc_text(datetime.fromisoformat(event.time))
    values["stream"] = int(event.stream)
    return tuple(values[column] for column in COLUMNS)
