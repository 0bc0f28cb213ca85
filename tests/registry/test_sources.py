"""Source subjects: each one's success and each of its error codes."""

from __future__ import annotations

import asyncio

import pytest

from shared.client import ByomClient
from shared.errors import Conflict, Forbidden, InvalidRequest, NotFound
from tests.harness import Gateway
from tests.registry.conftest import (
    SECRET,
    create_source,
    register_model,
    source_body,
    unique,
)

MISSING = "ri.byom.source.00000000-0000-0000-0000-000000000000"


@pytest.fixture
async def admin(shared_gateway: Gateway) -> ByomClient:
    return await shared_gateway.client("root", admin=True)


async def test_a_created_source_has_a_rid_its_creator_as_owner_and_no_secret(
    admin: ByomClient,
) -> None:
    source = await create_source(admin, roles={"group:ml": "editor"})

    assert source["rid"].startswith("ri.byom.source.")
    assert source["auth"] == {"type": "bearer"}
    assert source["roles"] == {"group:ml": "editor", "user:root": "owner"}
    assert source["created_at"] == source["updated_at"]
    assert SECRET not in repr(source)
    assert await admin.registry("source.get", {"rid": source["rid"]}) == source


async def test_a_taken_source_name_is_a_conflict(admin: ByomClient) -> None:
    name = unique("dup")
    await create_source(admin, name=name)
    with pytest.raises(Conflict, match=name):
        await create_source(admin, name=name)


async def test_list_shows_every_source_by_name(admin: ByomClient) -> None:
    created = await create_source(admin)
    listed = await admin.registry("source.list", {})
    assert created in listed["sources"]
    names = [source["name"] for source in listed["sources"]]
    assert names == sorted(names)


async def test_get_and_list_refuse_bad_bodies(admin: ByomClient) -> None:
    with pytest.raises(NotFound):
        await admin.registry("source.get", {"rid": MISSING})
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry("source.get", {})
    assert caught.value.field == "rid"
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry("source.list", {"page": 2})
    assert caught.value.field == "page"


async def test_update_changes_only_the_given_fields(admin: ByomClient) -> None:
    source = await create_source(admin, port=8443)
    updated = await admin.registry(
        "source.update",
        {"rid": source["rid"], "base_url": "https://other.example.com", "port": None},
    )
    assert updated == {
        **source,
        "base_url": "https://other.example.com",
        "port": None,
        "updated_at": updated["updated_at"],
    }
    assert updated["updated_at"] > source["updated_at"]


async def test_update_replaces_the_auth_and_never_shows_the_new_secret(
    admin: ByomClient,
) -> None:
    source = await create_source(admin)
    auth = {"type": "api_key", "header": "api-key", "secret": "new-" + SECRET}
    updated = await admin.registry(
        "source.update", {"rid": source["rid"], "auth": auth}
    )
    assert updated["auth"] == {"type": "api_key", "header": "api-key"}


async def test_update_errors(admin: ByomClient) -> None:
    taken = await create_source(admin)
    source = await create_source(admin)
    with pytest.raises(NotFound):
        await admin.registry("source.update", {"rid": MISSING, "port": 1})
    with pytest.raises(Conflict, match="already exists"):
        await admin.registry(
            "source.update", {"rid": source["rid"], "name": taken["name"]}
        )
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry("source.update", {"rid": source["rid"], "name": None})
    assert caught.value.field == "name"
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry("source.update", {"rid": source["rid"], "roles": {}})
    assert caught.value.field == "roles"


async def test_exports_cannot_be_disabled_while_models_use_the_source(
    admin: ByomClient,
) -> None:
    model = await register_model(admin)
    with pytest.raises(Conflict, match="delete them first"):
        await admin.registry(
            "source.update", {"rid": model["source"], "exports_enabled": False}
        )


async def test_a_deleted_source_is_gone(admin: ByomClient) -> None:
    source = await create_source(admin)
    assert await admin.registry("source.delete", {"rid": source["rid"]}) == {}
    with pytest.raises(NotFound):
        await admin.registry("source.get", {"rid": source["rid"]})
    with pytest.raises(NotFound):
        await admin.registry("source.delete", {"rid": source["rid"]})


async def test_a_source_with_models_cannot_be_deleted(admin: ByomClient) -> None:
    model = await register_model(admin)
    with pytest.raises(Conflict, match="1 model"):
        await admin.registry("source.delete", {"rid": model["source"]})
    await admin.registry("model.delete", {"rid": model["rid"]})
    assert await admin.registry("source.delete", {"rid": model["source"]}) == {}


async def test_share_grants_changes_and_removes_a_role(admin: ByomClient) -> None:
    source = await create_source(admin)
    rid = source["rid"]

    shared = await admin.registry(
        "source.share", {"rid": rid, "principal": "group:ml", "role": "editor"}
    )
    assert shared["roles"] == {"user:root": "owner", "group:ml": "editor"}
    shared = await admin.registry(
        "source.share", {"rid": rid, "principal": "group:ml", "role": "viewer"}
    )
    assert shared["roles"]["group:ml"] == "viewer"
    shared = await admin.registry(
        "source.share", {"rid": rid, "principal": "group:ml", "role": "none"}
    )
    assert shared["roles"] == {"user:root": "owner"}


async def test_share_errors(admin: ByomClient) -> None:
    rid = (await create_source(admin))["rid"]
    with pytest.raises(Conflict, match="no owner"):
        await admin.registry(
            "source.share", {"rid": rid, "principal": "user:root", "role": "editor"}
        )
    with pytest.raises(NotFound):
        await admin.registry(
            "source.share", {"rid": MISSING, "principal": "user:bob", "role": "viewer"}
        )
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry(
            "source.share", {"rid": rid, "principal": "bob", "role": "viewer"}
        )
    assert caught.value.field == "principal"
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry(
            "source.share", {"rid": rid, "principal": "user:bob", "role": "admin"}
        )
    assert caught.value.field == "role"


async def test_ownership_can_be_handed_over(admin: ByomClient) -> None:
    rid = (await create_source(admin))["rid"]
    await admin.registry(
        "source.share", {"rid": rid, "principal": "group:platform", "role": "owner"}
    )
    shared = await admin.registry(
        "source.share", {"rid": rid, "principal": "user:root", "role": "none"}
    )
    assert shared["roles"] == {"group:platform": "owner"}
    with pytest.raises(Forbidden, match="owner"):
        await admin.registry("source.delete", {"rid": rid})


async def test_non_admins_are_forbidden_every_source_subject(
    shared_gateway: Gateway, admin: ByomClient
) -> None:
    rid = (await create_source(admin))["rid"]
    user = await shared_gateway.client("root")
    bodies = {
        "source.create": source_body(),
        "source.update": {"rid": rid, "port": 1},
        "source.delete": {"rid": rid},
        "source.get": {"rid": rid},
        "source.list": {},
        "source.share": {"rid": rid, "principal": "user:x", "role": "viewer"},
        "admin.reseal": {},
    }
    for operation, body in bodies.items():
        with pytest.raises(Forbidden, match="enrollment administrators"):
            await user.registry(operation, body)


async def test_concurrent_creates_of_one_name_give_one_source(
    admin: ByomClient,
) -> None:
    name = unique("race")
    outcomes = await asyncio.gather(
        *(create_source(admin, name=name) for _ in range(8)), return_exceptions=True
    )
    assert sum(isinstance(o, dict) for o in outcomes) == 1
    assert all(isinstance(o, dict | Conflict) for o in outcomes)
