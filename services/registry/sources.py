"""Source endpoints: create, update, delete, get, list, share, reseal.

A source's secret is sealed as soon as it is parsed and kept apart from
the document: the document is what replies show, and events carry the
document plus ``sealed_secret``.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.registry import store as writes
from services.registry.handlers import RegistryCore, now_iso
from services.registry.permissions import (
    OWNER,
    OWNER_OR_EDITOR,
    require_admin,
    require_source_role,
)
from services.registry.validation import parse, parse_update
from shared.contracts.registry import (
    EmptyBody,
    RidBody,
    SourceShare,
    SourceSpec,
    SourceUpdate,
    public_auth,
)
from shared.errors import Conflict, Unavailable
from shared.secrets import SecretBoxError
from shared.transport import Call


class SourceHandlers:
    """The ``byom.registry.source.*`` endpoints and ``admin.reseal``."""

    def __init__(self, core: RegistryCore) -> None:
        self._core = core

    async def source_create(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse(SourceSpec, call.body)
        auth, sealed = self._seal(spec.auth.model_dump())
        stamp = now_iso()
        doc = {
            "rid": f"ri.byom.source.{uuid.uuid4()}",
            "name": spec.name,
            "base_url": spec.base_url,
            "port": spec.port,
            "auth": auth,
            "exports_enabled": spec.exports_enabled,
            "roles": {**spec.roles, f"user:{call.caller.user}": "owner"},
            "created_at": stamp,
            "updated_at": stamp,
        }
        async with self._core.writing():
            await self._core.name_free("sources", spec.name)
            await self._save(doc, sealed)
        return doc

    async def source_update(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse_update(SourceUpdate, call.body)
        changes = spec.model_dump(exclude_unset=True, exclude={"rid", "auth"})
        async with self._core.writing():
            source = await self._core.existing("sources", spec.rid)
            require_source_role(source, call.caller, OWNER_OR_EDITOR)
            sealed = await self._core.store.sealed_secret(spec.rid)
            if spec.auth is not None:
                changes["auth"], sealed = self._seal(spec.auth.model_dump())
            if "name" in changes:
                await self._core.name_free("sources", changes["name"], spec.rid)
            if changes.get("exports_enabled") is False:
                await self._refuse_if_used(source, "disable exports on")
            doc = {**source, **changes, "updated_at": now_iso()}
            await self._save(doc, sealed)
        return doc

    async def source_delete(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        rid = parse(RidBody, call.body).rid
        async with self._core.writing():
            source = await self._core.existing("sources", rid)
            require_source_role(source, call.caller, OWNER)
            await self._refuse_if_used(source, "delete")
            data = {"rid": rid, "name": source["name"]}
            await self._core.change(
                "source.deleted", data, writes.delete_row("sources", rid)
            )
        return {}

    async def source_get(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        return await self._core.existing("sources", parse(RidBody, call.body).rid)

    async def source_list(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        parse(EmptyBody, call.body)
        return {"sources": await self._core.store.all("sources")}

    async def source_share(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse(SourceShare, call.body)
        async with self._core.writing():
            source = await self._core.existing("sources", spec.rid)
            require_source_role(source, call.caller, OWNER)
            roles = {k: v for k, v in source["roles"].items() if k != spec.principal}
            if spec.role != "none":
                roles[spec.principal] = spec.role
            if "owner" not in roles.values():
                raise Conflict(
                    f"source {source['name']!r} would have no owner: "
                    "make someone else owner first"
                )
            doc = {**source, "roles": roles, "updated_at": now_iso()}
            sealed = await self._core.store.sealed_secret(spec.rid)
            await self._save(doc, sealed)
        return doc

    async def admin_reseal(self, call: Call) -> dict[str, Any]:
        """Seal every source secret again under the first key (key rotation)."""
        require_admin(call.caller)
        parse(EmptyBody, call.body)
        resealed = []
        async with self._core.writing():
            for rid, sealed in await self._core.store.sealed_secrets():
                source = await self._core.existing("sources", rid)
                doc = {**source, "updated_at": now_iso()}
                await self._save(doc, self._reseal(source, sealed))
                resealed.append(source["name"])
        return {"resealed": len(resealed), "sources": resealed}

    def _seal(self, auth: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        secret = auth.get("secret")
        return public_auth(auth), self._core.box.seal(secret) if secret else None

    def _reseal(self, source: dict[str, Any], sealed: str) -> str:
        try:
            return self._core.box.reseal(sealed)
        except SecretBoxError as exc:
            raise Unavailable(
                f"the secret of source {source['name']!r} opens with none of the "
                "keys in BYOM_SECRET_KEY: keep the old key in the list until "
                "every source is resealed"
            ) from exc

    async def _save(self, doc: dict[str, Any], sealed: str | None) -> None:
        event = {**doc, "sealed_secret": sealed}
        await self._core.change(
            "source.upserted", event, writes.put_source(doc, sealed)
        )

    async def _refuse_if_used(self, source: dict[str, Any], action: str) -> None:
        count = await self._core.store.count_models_of(source["rid"])
        if count:
            raise Conflict(
                f"cannot {action} source {source['name']!r}: {count} model(s) "
                "are registered on it; delete them first"
            )
