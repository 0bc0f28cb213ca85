"""Model subjects: each one's success and each of its error codes."""

from __future__ import annotations

import pytest

from shared.client import ByomClient
from shared.errors import Conflict, Forbidden, InvalidRequest, NotFound
from tests.harness import Gateway
from tests.registry.conftest import create_source, model_body, register_model, unique

MISSING = "ri.byom.model.00000000-0000-0000-0000-000000000000"


@pytest.fixture
async def admin(shared_gateway: Gateway) -> ByomClient:
    return await shared_gateway.client("root", admin=True)


async def test_a_registered_model_is_enabled_and_readable(admin: ByomClient) -> None:
    source = await create_source(admin)
    body = model_body(source["rid"], context_window=128_000)
    model = await admin.registry("model.register", body)

    assert model["rid"].startswith("ri.byom.model.")
    assert model == {
        **body,
        "rid": model["rid"],
        "limits": {
            "enrollment": {"rpm": 100, "tpm": 10_000},
            "user": {"rpm": 10, "tpm": None},
        },
        "max_output_tokens": None,
        "enabled": True,
        "created_at": model["created_at"],
        "updated_at": model["created_at"],
    }
    assert await admin.registry("model.get", {"rid": model["rid"]}) == model
    assert model in (await admin.registry("model.list", {}))["models"]


async def test_register_errors(admin: ByomClient) -> None:
    source = await create_source(admin)
    closed = await create_source(admin, exports_enabled=False)
    name = (await register_model(admin, source["rid"]))["name"]

    with pytest.raises(Conflict, match=name):
        await register_model(admin, source["rid"], name=name)
    with pytest.raises(NotFound, match="no source"):
        await register_model(admin, "ri.byom.source.nope")
    with pytest.raises(InvalidRequest, match="exports disabled") as caught:
        await register_model(admin, closed["rid"])
    assert caught.value.field == "source"


async def test_update_changes_limits_and_name(admin: ByomClient) -> None:
    model = await register_model(admin)
    limits = {"enrollment": {"tpm": 5000}, "user": {"rpm": 1, "tpm": 100}}
    new_name = unique("renamed")
    updated = await admin.registry(
        "model.update", {"rid": model["rid"], "limits": limits, "name": new_name}
    )
    assert updated == {
        **model,
        "limits": {
            "enrollment": {"rpm": None, "tpm": 5000},
            "user": {"rpm": 1, "tpm": 100},
        },
        "name": new_name,
        "updated_at": updated["updated_at"],
    }


async def test_update_errors(admin: ByomClient) -> None:
    taken = await register_model(admin)
    model = await register_model(admin)
    with pytest.raises(NotFound):
        await admin.registry("model.update", {"rid": MISSING, "context_window": 8})
    with pytest.raises(Conflict):
        await admin.registry(
            "model.update", {"rid": model["rid"], "name": taken["name"]}
        )
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry(
            "model.update", {"rid": model["rid"], "source": taken["source"]}
        )
    assert caught.value.field == "source"
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry("model.update", {"rid": model["rid"], "endpoints": None})
    assert caught.value.field == "endpoints"


async def test_disable_and_enable_flip_the_model(admin: ByomClient) -> None:
    model = await register_model(admin)
    disabled = await admin.registry("model.disable", {"rid": model["rid"]})
    assert disabled["enabled"] is False
    enabled = await admin.registry("model.enable", {"rid": model["rid"]})
    assert enabled == {**model, "updated_at": enabled["updated_at"]}
    for operation in ("model.disable", "model.enable"):
        with pytest.raises(NotFound):
            await admin.registry(operation, {"rid": MISSING})
        with pytest.raises(InvalidRequest) as caught:
            await admin.registry(operation, {"rid": model["rid"], "why": "x"})
        assert caught.value.field == "why"


async def test_any_admin_may_disable_a_model_without_a_source_role(
    shared_gateway: Gateway, admin: ByomClient
) -> None:
    model = await register_model(admin)
    stranger = await shared_gateway.client("other-admin", admin=True)
    assert (await stranger.registry("model.disable", {"rid": model["rid"]}))[
        "enabled"
    ] is False
    with pytest.raises(Forbidden, match="owner or editor"):
        await stranger.registry("model.delete", {"rid": model["rid"]})


async def test_a_deleted_model_is_gone_and_frees_its_name(admin: ByomClient) -> None:
    model = await register_model(admin)
    assert await admin.registry("model.delete", {"rid": model["rid"]}) == {}
    with pytest.raises(NotFound):
        await admin.registry("model.get", {"rid": model["rid"]})
    with pytest.raises(NotFound):
        await admin.registry("model.delete", {"rid": model["rid"]})
    again = await register_model(admin, model["source"], name=model["name"])
    assert again["rid"] != model["rid"]


async def test_get_and_list_refuse_bad_bodies(admin: ByomClient) -> None:
    with pytest.raises(NotFound):
        await admin.registry("model.get", {"rid": MISSING})
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry("model.get", {"rid": ""})
    assert caught.value.field == "rid"
    with pytest.raises(InvalidRequest):
        await admin.registry("model.list", {"source": "x"})


async def test_non_admins_are_forbidden_every_model_subject(
    shared_gateway: Gateway, admin: ByomClient
) -> None:
    model = await register_model(admin)
    user = await shared_gateway.client("root")
    rid = {"rid": model["rid"]}
    bodies = {
        "model.register": model_body(model["source"]),
        "model.update": {**rid, "context_window": 10},
        "model.disable": rid,
        "model.enable": rid,
        "model.delete": rid,
        "model.get": rid,
        "model.list": {},
    }
    for operation, body in bodies.items():
        with pytest.raises(Forbidden, match="enrollment administrators"):
            await user.registry(operation, body)
