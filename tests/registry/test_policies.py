"""Access, project limits and the selector: successes and error codes."""

from __future__ import annotations

from typing import Any

import pytest

from shared.client import ByomClient
from shared.errors import (
    ApplicationUnsupported,
    Forbidden,
    InvalidRequest,
    NotFound,
)
from tests.harness import Gateway
from tests.registry.conftest import create_source, model_body, register_model, unique

AGENTIC = ["streaming", "tool_calling", "structured_outputs", "reasoning"]


@pytest.fixture
async def gateway_admin(gateway: Gateway) -> ByomClient:
    return await gateway.client("root", admin=True)


async def test_access_is_off_until_set_and_reads_back(
    gateway_admin: ByomClient,
) -> None:
    assert await gateway_admin.registry("access.get", {}) == {
        "enabled": False,
        "groups": None,
    }
    access = await gateway_admin.registry(
        "access.set", {"enabled": True, "groups": ["ml"]}
    )
    assert access == {
        "enabled": True,
        "groups": ["ml"],
        "updated_at": access["updated_at"],
    }
    assert await gateway_admin.registry("access.get", {}) == access


async def test_access_set_errors(gateway: Gateway, gateway_admin: ByomClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await gateway_admin.registry("access.set", {"groups": None})
    assert caught.value.field == "enabled"
    with pytest.raises(InvalidRequest) as caught:
        await gateway_admin.registry("access.set", {"enabled": True, "groups": "ml"})
    assert caught.value.field == "groups"
    user = await gateway.client("bob")
    for operation in ("access.set", "access.get"):
        with pytest.raises(Forbidden):
            await user.registry(operation, {"enabled": True})


async def test_project_limits_default_to_70_percent_of_the_enrollment(
    gateway_admin: ByomClient,
) -> None:
    model = await register_model(gateway_admin)
    limits = await gateway_admin.registry(
        "project_limits.get", {"model": model["name"], "project": "p1"}
    )
    assert limits == {
        "model": model["rid"],
        "model_name": model["name"],
        "project": "p1",
        "basis": "default",
        "percent": 70,
        "rpm": 70,
        "tpm": 7000,
        "enrollment": {"rpm": 100, "tpm": 10_000},
    }


async def test_project_limits_set_by_percent_or_absolute(
    gateway_admin: ByomClient,
) -> None:
    model = await register_model(gateway_admin)
    by_percent = await gateway_admin.registry(
        "project_limits.set", {"model": model["rid"], "project": "p1", "percent": 25}
    )
    assert (by_percent["basis"], by_percent["rpm"], by_percent["tpm"]) == (
        "percent",
        25,
        2500,
    )
    absolute = await gateway_admin.registry(
        "project_limits.set", {"model": model["name"], "project": "p2", "rpm": 7}
    )
    assert (absolute["basis"], absolute["rpm"], absolute["tpm"]) == (
        "absolute",
        7,
        7000,
    )
    read = await gateway_admin.registry(
        "project_limits.get", {"model": model["rid"], "project": "p1"}
    )
    assert read == by_percent


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"project": "p", "percent": 0}, "percent"),
        ({"project": "p", "percent": 101}, "percent"),
        ({"project": "p", "rpm": -1}, "rpm"),
        ({"project": "p", "tpm": 1.5}, "tpm"),
        ({"project": "p"}, "percent"),
        ({"project": "p", "percent": 50, "rpm": 5}, "percent"),
        ({"percent": 50}, "project"),
        ({"project": "p", "percent": 50, "burst": 2}, "burst"),
    ],
)
async def test_project_limits_set_names_the_bad_field(
    gateway_admin: ByomClient, body: dict[str, Any], field: str
) -> None:
    model = await register_model(gateway_admin)
    with pytest.raises(InvalidRequest) as caught:
        await gateway_admin.registry(
            "project_limits.set", {"model": model["rid"], **body}
        )
    assert caught.value.field == field


async def test_project_limits_errors(
    gateway: Gateway, gateway_admin: ByomClient
) -> None:
    for operation, extra in (
        ("project_limits.set", {"percent": 5}),
        ("project_limits.get", {}),
    ):
        with pytest.raises(NotFound):
            await gateway_admin.registry(
                operation, {"model": "nope", "project": "p", **extra}
            )
        user = await gateway.client("bob")
        with pytest.raises(Forbidden):
            await user.registry(operation, {"model": "nope", "project": "p", **extra})
    with pytest.raises(InvalidRequest) as caught:
        await gateway_admin.registry("project_limits.get", {"model": "m"})
    assert caught.value.field == "project"


async def _catalogue(gateway_admin: ByomClient) -> dict[str, dict[str, Any]]:
    source = (await create_source(gateway_admin))["rid"]
    plain = await register_model(gateway_admin, source, name=unique("plain"))
    agentic_body = model_body(source, name=unique("agentic"), max_output_tokens=2048)
    agentic_body["endpoints"][0]["capabilities"] = AGENTIC
    agentic = await gateway_admin.registry("model.register", agentic_body)
    off = await register_model(gateway_admin, source, name=unique("off"))
    await gateway_admin.registry("model.disable", {"rid": off["rid"]})
    return {"plain": plain, "agentic": agentic, "off": off}


async def test_the_selector_lists_enabled_models_that_cover_the_application(
    gateway: Gateway, gateway_admin: ByomClient
) -> None:
    models = await _catalogue(gateway_admin)
    await gateway_admin.registry("access.set", {"enabled": True, "groups": None})
    user = await gateway.client("alice")

    workshop = await user.registry("selector", {"application": "workshop"})
    fde = await user.registry("selector", {"application": "ai-fde"})

    assert sorted(m["name"] for m in workshop["models"]) == sorted(
        [models["plain"]["name"], models["agentic"]["name"]]
    )
    assert fde["models"] == [
        {
            "name": models["agentic"]["name"],
            "provider": "openai",
            "capabilities": AGENTIC,
            "limits": models["agentic"]["limits"],
            "max_output_tokens": 2048,
        }
    ]


async def test_the_selector_is_empty_without_access(
    gateway: Gateway, gateway_admin: ByomClient
) -> None:
    await _catalogue(gateway_admin)
    user = await gateway.client("alice", ["sales"])
    assert await user.registry("selector", {"application": "workshop"}) == {
        "models": []
    }
    await gateway_admin.registry("access.set", {"enabled": True, "groups": ["ml"]})
    assert await user.registry("selector", {"application": "workshop"}) == {
        "models": []
    }
    member = await gateway.client("bob", ["sales", "ml"])
    listed = await member.registry("selector", {"application": "workshop"})
    assert len(listed["models"]) == 2


async def test_the_selector_refuses_unsupported_and_unknown_applications(
    gateway: Gateway,
) -> None:
    user = await gateway.client("alice")
    with pytest.raises(ApplicationUnsupported):
        await user.registry("selector", {"application": "aip-assist"})
    with pytest.raises(InvalidRequest, match="unknown application") as caught:
        await user.registry("selector", {"application": "excel"})
    assert caught.value.field == "application"
    with pytest.raises(InvalidRequest) as caught:
        await user.registry("selector", {})
    assert caught.value.field == "application"
