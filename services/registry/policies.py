"""Access, project limits and the model selector: who may use which model.

Effective project limits follow the limiter's own rule (imported, so the
two can never disagree): 70 percent of the enrollment limits unless a
percent or absolute values are set; an absolute value set for one of rpm
and tpm leaves the other at its percent share.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from services.limiter.limits import (
    DEFAULT_PROJECT_PERCENT,
    RateLimit,
    project_limits,
)
from services.registry import store as writes
from services.registry.handlers import RegistryCore, now_iso
from services.registry.permissions import require_admin
from services.registry.validation import parse
from shared.applications import Application, application
from shared.contracts.registry import (
    CAPABILITIES,
    AccessSpec,
    EmptyBody,
    ProjectLimitsQuery,
    ProjectLimitsSpec,
    SelectorQuery,
)
from shared.errors import InvalidRequest
from shared.identity import Principal
from shared.transport import Call

NO_ACCESS = {"enabled": False, "groups": None}


class PolicyHandlers:
    """``access.*``, ``project_limits.*`` and ``selector``."""

    def __init__(self, core: RegistryCore) -> None:
        self._core = core

    async def access_set(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse(AccessSpec, call.body)
        doc = {**spec.model_dump(), "updated_at": now_iso()}
        async with self._core.writing():
            await self._core.change(
                "access.set", doc, writes.put_setting("access", doc)
            )
        return doc

    async def access_get(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        parse(EmptyBody, call.body)
        return await self._core.store.setting("access") or dict(NO_ACCESS)

    async def project_limits_set(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse(ProjectLimitsSpec, call.body, whole="percent")
        async with self._core.writing():
            model = await self._core.model_by_rid_or_name(spec.model)
            doc = {
                **spec.model_dump(exclude_none=True),
                "model": model["rid"],
                "updated_at": now_iso(),
            }
            await self._core.change(
                "project_limits.set", doc, writes.put_project_limits(doc)
            )
        return effective_limits(model, spec.project, doc)

    async def project_limits_get(self, call: Call) -> dict[str, Any]:
        require_admin(call.caller)
        spec = parse(ProjectLimitsQuery, call.body)
        model = await self._core.model_by_rid_or_name(spec.model)
        stored = await self._core.store.project_limits(model["rid"], spec.project)
        return effective_limits(model, spec.project, stored)

    async def selector(self, call: Call) -> dict[str, Any]:
        app = _application(parse(SelectorQuery, call.body).application)
        access = await self._core.store.setting("access") or NO_ACCESS
        if not has_access(access, call.caller):
            return {"models": []}
        models = await self._core.store.all("models")
        return {"models": [_entry(m) for m in models if _selectable(m, app)]}


def effective_limits(
    model: dict[str, Any], project: str, stored: dict[str, Any] | None
) -> dict[str, Any]:
    """Return the limits a project gets on a model, and where they come from."""
    stored = stored or {}
    enrollment = RateLimit(**model["limits"]["enrollment"])
    percent = stored.get("percent")
    rpm, tpm = stored.get("rpm"), stored.get("tpm")
    limits = project_limits(enrollment, percent=percent, rpm=rpm, tpm=tpm)
    if rpm is not None or tpm is not None:
        basis = "absolute"
    else:
        basis = "percent" if percent is not None else "default"
    return {
        "model": model["rid"],
        "model_name": model["name"],
        "project": project,
        "basis": basis,
        "percent": percent if percent is not None else DEFAULT_PROJECT_PERCENT,
        **asdict(limits),
        "enrollment": asdict(enrollment),
    }


def has_access(access: dict[str, Any], caller: Principal) -> bool:
    """Whether registered-model access covers the caller (as the router checks)."""
    if not access.get("enabled"):
        return False
    groups = access.get("groups")
    return groups is None or bool(set(groups).intersection(caller.groups))


def _application(name: str) -> Application:
    try:
        return application(name)
    except InvalidRequest as exc:
        raise InvalidRequest(
            exc.message.replace("Byom-Application header", "application"),
            field="application",
        ) from exc


def _selectable(model: dict[str, Any], app: Application) -> bool:
    """An enabled model with one endpoint that covers all the app needs."""
    return bool(model["enabled"]) and any(
        app.needs.issubset(endpoint["capabilities"]) for endpoint in model["endpoints"]
    )


def _entry(model: dict[str, Any]) -> dict[str, Any]:
    declared = {c for e in model["endpoints"] for c in e["capabilities"]}
    entry = {
        "name": model["name"],
        "provider": model["provider"],
        "capabilities": [c for c in CAPABILITIES if c in declared],
        "limits": model["limits"],
    }
    for optional in ("context_window", "max_output_tokens"):
        if model.get(optional) is not None:
            entry[optional] = model[optional]
    return entry
