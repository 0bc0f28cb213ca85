"""The router's admission checks, in the contract's order, without I/O.

token → application → body → model exists → model enabled → access →
capabilities. Quota and the provider call come after, in the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.router.requests import validate_chat_request
from shared.applications import Application, application
from shared.errors import (
    AccessNotEnabled,
    CapabilityUnsupported,
    InvalidRequest,
    ModelDisabled,
    NotFound,
)
from shared.identity import Principal
from shared.registry_view import RegistryView

DEFAULT_OUTPUT_ALLOWANCE = 1024
"""Tokens reserved for the answer when neither the request
(``max_completion_tokens``) nor the model (``max_output_tokens``) bounds it."""

_CAPABILITY_ORDER = (
    "streaming",
    "tool_calling",
    "structured_outputs",
    "reasoning",
    "vision",
)


@dataclass(frozen=True, slots=True)
class Admission:
    """What the checks decided: the model, its endpoint, the caller's context."""

    app: Application
    model: dict[str, Any]
    endpoint: dict[str, Any]
    source: dict[str, Any]
    project: str


def admit(
    view: RegistryView,
    *,
    caller: Principal,
    app_name: str | None,
    project: str | None,
    request: dict[str, Any],
    needs: set[str],
) -> Admission:
    """Run every check before quota; raise the first failure's error."""
    app = application(app_name)
    validate_chat_request(request)
    if not project:
        raise InvalidRequest(
            "missing Byom-Project header: name the project this call belongs to",
            field="Byom-Project",
        )
    model = _enabled_model(view, request.get("model"))
    check_access(view.access, caller)
    endpoint = choose_endpoint(model, needs)
    source = view.sources.get(model["source"])
    if source is None:
        raise NotFound(f"the source of model {model['name']!r} no longer exists")
    return Admission(app, model, endpoint, source, project)


def _enabled_model(view: RegistryView, name: Any) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise InvalidRequest("model: name a registered model", field="model")
    model = view.model(name)
    if model is None:
        raise NotFound(f"no registered model named {name!r}")
    if not model["enabled"]:
        raise ModelDisabled(
            f"model {name!r} is disabled: an administrator must enable it"
        )
    return model


def check_access(access: dict[str, Any], caller: Principal) -> None:
    """Refuse a caller that registered-model access does not cover."""
    if not access.get("enabled"):
        raise AccessNotEnabled(
            "registered-model access is not enabled for this enrollment"
        )
    groups = access.get("groups")
    if groups is not None and not set(groups).intersection(caller.groups):
        raise AccessNotEnabled(
            "registered-model access is not enabled for any of your groups"
        )


def choose_endpoint(model: dict[str, Any], needs: set[str]) -> dict[str, Any]:
    """Pick the first endpoint that declares every capability the call needs."""
    endpoints: list[dict[str, Any]] = model["endpoints"]
    for endpoint in endpoints:
        if needs.issubset(endpoint["capabilities"]):
            return endpoint
    declared = {cap for endpoint in endpoints for cap in endpoint["capabilities"]}
    missing = _in_order(needs - declared)
    if missing:
        raise CapabilityUnsupported(
            f"model {model['name']!r} does not declare {missing[0]!r}: use a "
            "model that does, or leave that feature out of the request",
            capability=missing[0],
        )
    first = _in_order(needs)[0]
    raise CapabilityUnsupported(
        f"model {model['name']!r} declares {first!r}, but on no endpoint together "
        f"with {', '.join(_in_order(needs - {first}))}",
        capability=first,
    )


def _in_order(capabilities: set[str]) -> list[str]:
    return [cap for cap in _CAPABILITY_ORDER if cap in capabilities]


def output_allowance(model: dict[str, Any], request: dict[str, Any]) -> int:
    """Tokens to reserve for the answer."""
    for value in (
        request.get("max_completion_tokens"),
        request.get("max_tokens"),
        model.get("max_output_tokens"),
    ):
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_OUTPUT_ALLOWANCE
