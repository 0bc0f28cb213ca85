"""Registry endpoints: each validates, checks permission, commits, publishes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.registry import store as writes
from services.registry.publisher import EventPublisher
from services.registry.store import RegistryStore
from shared.contracts.events import EventKind
from shared.contracts.registry import (
    AccessSpec,
    ModelSpec,
    SourceSpec,
    public_auth,
)
from shared.errors import Conflict, Forbidden, InvalidRequest, NotFound
from shared.identity import Principal
from shared.logs import get_logger
from shared.secrets import SecretBox
from shared.transport import Call, invalid_from_validation

_log = get_logger(__name__)
_Spec = TypeVar("_Spec", bound=BaseModel)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse(spec: type[_Spec], body: dict[str, Any]) -> _Spec:
    """Validate a body against its spec, naming the first bad field."""
    try:
        return spec.model_validate(body)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from exc


def require_admin(caller: Principal) -> None:
    if not caller.is_admin:
        raise Forbidden(
            "only enrollment administrators may do this: "
            "ask one for the 'enrollment-admin' role"
        )


def source_role(source: dict[str, Any], caller: Principal) -> str | None:
    """Return the strongest role the caller holds on a source, if any."""
    rank = {"owner": 3, "editor": 2, "viewer": 1}
    held = [role for who, role in source["roles"].items() if who in caller.principals]
    return max(held, key=rank.__getitem__, default=None)


def require_source_role(
    source: dict[str, Any], caller: Principal, allowed: tuple[str, ...]
) -> None:
    role = source_role(source, caller)
    if role not in allowed:
        raise Forbidden(
            f"you need to be {' or '.join(allowed)} of source {source['name']!r} "
            f"(you are {role or 'not on its roles'})"
        )


class RegistryHandlers:
    """The registry's request/reply endpoints."""

    def __init__(
        self, store: RegistryStore, publisher: EventPublisher, box: SecretBox
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._box = box
        # Changes are serialised so versions and events stay in one order.
        self._writing = asyncio.Lock()

    async def _change(
        self, kind: EventKind, data: dict[str, Any], write: writes._Write
    ) -> None:
        async with self._writing:
            event = await self._store.commit_change(kind, data, now_iso(), write)
            await self._publisher.publish_pending()
        _log.info("registry_changed", kind=kind, version=event.version)

    async def source_create(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse(SourceSpec, call.body)
        if await self._store.find_by_name("sources", spec.name):
            raise Conflict(f"a source named {spec.name!r} already exists")
        stamp = now_iso()
        auth = spec.auth.model_dump()
        secret = auth.get("secret")
        doc = {
            "rid": f"ri.byom.source.{uuid.uuid4()}",
            "name": spec.name,
            "base_url": spec.base_url,
            "port": spec.port,
            "auth": public_auth(auth),
            "exports_enabled": spec.exports_enabled,
            "roles": {**spec.roles, f"user:{call.caller.user}": "owner"},
            "created_at": stamp,
            "updated_at": stamp,
        }
        sealed = self._box.seal(secret) if secret else None
        event_data = {**doc, "sealed_secret": sealed}
        await self._change(
            "source.upserted", event_data, writes.put_source(doc, sealed)
        )
        return doc

    async def source_get(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        return await self._existing("sources", call.body)

    async def source_list(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        return {"sources": await self._store.all("sources")}

    async def model_register(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse(ModelSpec, call.body)
        source = await self._store.get("sources", spec.source)
        if source is None:
            raise NotFound(f"no source with rid {spec.source!r}")
        require_source_role(source, call.caller, ("owner", "editor"))
        if not source["exports_enabled"]:
            raise InvalidRequest(
                f"source {source['name']!r} has exports disabled: "
                "enable exports on it before registering models",
                field="source",
            )
        if await self._store.find_by_name("models", spec.name):
            raise Conflict(f"a model named {spec.name!r} already exists")
        stamp = now_iso()
        doc = {
            "rid": f"ri.byom.model.{uuid.uuid4()}",
            **spec.model_dump(mode="json"),
            "enabled": True,
            "created_at": stamp,
            "updated_at": stamp,
        }
        await self._change("model.upserted", doc, writes.put_model(doc))
        return doc

    async def model_get(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        return await self._existing("models", call.body)

    async def model_list(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        return {"models": await self._store.all("models")}

    async def access_set(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse(AccessSpec, call.body)
        doc = {**spec.model_dump(), "updated_at": now_iso()}
        await self._change("access.set", doc, writes.put_setting("access", doc))
        return doc

    async def access_get(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        return await self._store.setting("access") or {"enabled": False, "groups": None}

    async def _existing(self, table: str, body: dict[str, Any]) -> dict[str, Any]:
        rid = body.get("rid")
        if not isinstance(rid, str) or not rid:
            raise InvalidRequest("rid: give the rid of the object", field="rid")
        found = await self._store.get(table, rid)
        if found is None:
            raise NotFound(f"no {table[:-1]} with rid {rid!r}")
        return found
