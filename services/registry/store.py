"""The registry's SQLite store: documents by rid, a version, an outbox.

Every change is one transaction that writes the object, bumps the registry
version and appends the event it produced to the outbox. The outbox is
published to ``BYOM_REGISTRY`` in version order after the commit, so a crash
between the two loses nothing: the next start publishes what is left.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from shared.contracts.events import EventKind, RegistryEvent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    rid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL,
    sealed_secret TEXT
);
CREATE TABLE IF NOT EXISTS models (
    rid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS models_by_source ON models (source);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS project_limits (
    model TEXT NOT NULL,
    project TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (model, project)
);
CREATE TABLE IF NOT EXISTS outbox (
    version INTEGER PRIMARY KEY,
    event TEXT NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
"""

_TABLES = {"sources": "sources", "models": "models"}


class RegistryStore:
    """Documents and events of the registry, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self.last_version = 0

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("registry store is not open")
        return self._db

    async def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.executescript(_SCHEMA)
        await self._db.commit()
        self.last_version = await self._stored_version()

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _stored_version(self) -> int:
        async with self.db.execute("SELECT MAX(version) FROM outbox") as cursor:
            row = await cursor.fetchone()
        return int(row[0] or 0) if row else 0

    async def get(self, table: str, rid: str) -> dict[str, Any] | None:
        query = f"SELECT doc FROM {_TABLES[table]} WHERE rid = ?"  # noqa: S608
        async with self.db.execute(query, (rid,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    async def find_by_name(self, table: str, name: str) -> dict[str, Any] | None:
        query = f"SELECT doc FROM {_TABLES[table]} WHERE name = ?"  # noqa: S608
        async with self.db.execute(query, (name,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    async def all(self, table: str) -> list[dict[str, Any]]:
        query = f"SELECT doc FROM {_TABLES[table]} ORDER BY name"  # noqa: S608
        async with self.db.execute(query) as cursor:
            rows = await cursor.fetchall()
        return [dict(orjson.loads(row[0])) for row in rows]

    async def sealed_secret(self, rid: str) -> str | None:
        query = "SELECT sealed_secret FROM sources WHERE rid = ?"
        async with self.db.execute(query, (rid,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def sealed_secrets(self) -> list[tuple[str, str]]:
        """Return ``(rid, sealed secret)`` of every source that has a secret."""
        query = "SELECT rid, sealed_secret FROM sources WHERE sealed_secret IS NOT NULL"
        async with self.db.execute(query) as cursor:
            rows = await cursor.fetchall()
        return [(str(row[0]), str(row[1])) for row in rows]

    async def count_models_of(self, source_rid: str) -> int:
        query = "SELECT COUNT(*) FROM models WHERE source = ?"
        async with self.db.execute(query, (source_rid,)) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def setting(self, key: str) -> dict[str, Any] | None:
        query = "SELECT doc FROM settings WHERE key = ?"
        async with self.db.execute(query, (key,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    async def project_limits(self, model: str, project: str) -> dict[str, Any] | None:
        query = "SELECT doc FROM project_limits WHERE model = ? AND project = ?"
        async with self.db.execute(query, (model, project)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    async def commit_change(
        self, kind: EventKind, data: dict[str, Any], time: str, write: Write
    ) -> RegistryEvent:
        """Apply one write and record its event, atomically."""
        version = self.last_version + 1
        event = RegistryEvent(version=version, kind=kind, time=time, data=data)
        await self._record(event, write, published=False)
        return event

    async def apply_published(self, event: RegistryEvent, write: Write) -> None:
        """Write an event the stream already holds, as the next version."""
        if event.version != self.last_version + 1:
            raise ValueError(
                f"event version {event.version} is not next after {self.last_version}"
            )
        await self._record(event, write, published=True)

    async def _record(
        self, event: RegistryEvent, write: Write, *, published: bool
    ) -> None:
        """Run the write and add the event to the outbox in one transaction."""
        try:
            await write(self.db)
            await self.db.execute(
                "INSERT INTO outbox (version, event, published) VALUES (?, ?, ?)",
                (event.version, event.model_dump_json(), int(published)),
            )
            await self.db.commit()
        except BaseException:
            await self.db.rollback()
            raise
        self.last_version = event.version

    async def event_at(self, version: int) -> RegistryEvent | None:
        query = "SELECT event FROM outbox WHERE version = ?"
        async with self.db.execute(query, (version,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else RegistryEvent.model_validate_json(row[0])

    async def unpublished(self) -> list[RegistryEvent]:
        query = "SELECT event FROM outbox WHERE published = 0 ORDER BY version"
        async with self.db.execute(query) as cursor:
            rows = await cursor.fetchall()
        return [RegistryEvent.model_validate_json(row[0]) for row in rows]

    async def mark_published(self, version: int) -> None:
        await self.db.execute(
            "UPDATE outbox SET published = 1 WHERE version = ?", (version,)
        )
        await self.db.commit()


class Write:
    """A write step of a change: ``await write(db)`` inside its transaction."""

    async def __call__(self, db: aiosqlite.Connection) -> None:
        raise NotImplementedError


def put_source(doc: dict[str, Any], sealed_secret: str | None) -> Write:
    return _Statement(
        "INSERT OR REPLACE INTO sources (rid, name, doc, sealed_secret) "
        "VALUES (?, ?, ?, ?)",
        (doc["rid"], doc["name"], orjson.dumps(doc).decode(), sealed_secret),
    )


def put_model(doc: dict[str, Any]) -> Write:
    return _Statement(
        "INSERT OR REPLACE INTO models (rid, name, source, doc) VALUES (?, ?, ?, ?)",
        (doc["rid"], doc["name"], doc["source"], orjson.dumps(doc).decode()),
    )


def delete_row(table: str, rid: str) -> Write:
    return _Statement(f"DELETE FROM {_TABLES[table]} WHERE rid = ?", (rid,))  # noqa: S608


def put_setting(key: str, doc: dict[str, Any]) -> Write:
    return _Statement(
        "INSERT OR REPLACE INTO settings (key, doc) VALUES (?, ?)",
        (key, orjson.dumps(doc).decode()),
    )


def put_project_limits(doc: dict[str, Any]) -> Write:
    return _Statement(
        "INSERT OR REPLACE INTO project_limits (model, project, doc) VALUES (?, ?, ?)",
        (doc["model"], doc["project"], orjson.dumps(doc).decode()),
    )


def delete_model(rid: str) -> Write:
    """Delete a model and the project limits set for it."""
    return _Steps(
        delete_row("models", rid),
        _Statement("DELETE FROM project_limits WHERE model = ?", (rid,)),
    )


class _Steps(Write):
    def __init__(self, *steps: Write) -> None:
        self._steps = steps

    async def __call__(self, db: aiosqlite.Connection) -> None:
        for step in self._steps:
            await step(db)


class _Statement(Write):
    def __init__(self, sql: str, params: tuple[Any, ...]) -> None:
        self._sql = sql
        self._params = params

    async def __call__(self, db: aiosqlite.Connection) -> None:
        await db.execute(self._sql, self._params)
