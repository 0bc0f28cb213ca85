"""Model endpoints: register, update, disable, enable, delete, get, list.

Registering, editing and deleting a model need an administrator who is also
owner or editor of its source; disabling and enabling need only an
administrator, so any of them can stop a misbehaving model at once.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.registry import store as writes
from services.registry.handlers import RegistryCore, now_iso
from services.registry.permissions import (
    OWNER_OR_EDITOR,
    require_admin,
    require_source_role,
)
from services.registry.validation import parse, parse_update
from shared.contracts.registry import EmptyBody, ModelSpec, ModelUpdate, RidBody
from shared.errors import InvalidRequest, NotFound
from shared.identity import Principal
from shared.transport import Call


class ModelHandlers:
    """The ``byom.registry.model.*`` endpoints."""

    def __init__(self, core: RegistryCore) -> None:
        self._core = core

    async def model_register(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse(ModelSpec, call.body)
        stamp = now_iso()
        doc = {
            "rid": f"ri.byom.model.{uuid.uuid4()}",
            **spec.model_dump(mode="json"),
            "enabled": True,
            "created_at": stamp,
            "updated_at": stamp,
        }
        async with self._core.writing():
            source = await self._source_of(spec.source)
            require_source_role(source, call.caller, OWNER_OR_EDITOR)
            _require_exports(source)
            await self._core.name_free("models", spec.name)
            await self._core.change("model.upserted", doc, writes.put_model(doc))
        return doc

    async def model_update(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse_update(ModelUpdate, call.body)
        changes = spec.model_dump(mode="json", include=spec.model_fields_set - {"rid"})
        async with self._core.writing():
            model = await self._editable(spec.rid, call.caller)
            if "name" in changes:
                await self._core.name_free("models", changes["name"], spec.rid)
            doc = {**model, **changes, "updated_at": now_iso()}
            await self._core.change("model.upserted", doc, writes.put_model(doc))
        return doc

    async def model_disable(self, call: Call) -> dict[str, Any]:
        return await self._set_enabled(call, enabled=False)

    async def model_enable(self, call: Call) -> dict[str, Any]:
        return await self._set_enabled(call, enabled=True)

    async def model_delete(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        rid = parse(RidBody, call.body).rid
        async with self._core.writing():
            model = await self._editable(rid, call.caller)
            data = {"rid": rid, "name": model["name"]}
            await self._core.change("model.deleted", data, writes.delete_model(rid))
        return {}

    async def model_get(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        return await self._core.existing("models", parse(RidBody, call.body).rid)

    async def model_list(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        parse(EmptyBody, call.body)
        return {"models": await self._core.store.all("models")}

    async def _set_enabled(self, call: Call, *, enabled: bool) -> dict[str, Any]:
        require_admin(call.caller)
        rid = parse(RidBody, call.body).rid
        async with self._core.writing():
            model = await self._core.existing("models", rid)
            doc = {**model, "enabled": enabled, "updated_at": now_iso()}
            await self._core.change("model.upserted", doc, writes.put_model(doc))
        return doc

    async def _editable(self, rid: str, caller: Principal) -> dict[str, Any]:
        """Return a model the caller may edit: owner or editor of its source."""
        model = await self._core.existing("models", rid)
        source = await self._core.existing("sources", model["source"])
        require_source_role(source, caller, OWNER_OR_EDITOR)
        return model

    async def _source_of(self, rid: str) -> dict[str, Any]:
        source = await self._core.store.get("sources", rid)
        if source is None:
            raise NotFound(f"no source with rid {rid!r}: create the source first")
        return source


def _require_exports(source: dict[str, Any]) -> None:
    if not source["exports_enabled"]:
        raise InvalidRequest(
            f"source: source {source['name']!r} has exports disabled; "
            "enable exports on it before registering models",
            field="source",
        )
