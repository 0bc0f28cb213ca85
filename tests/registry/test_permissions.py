"""The permission matrix: administrator or not × role on the source × how held.

Registry commands need an enrollment administrator; editing a source and
registering, editing or deleting its models also need owner or editor on
the source, sharing and deleting it need owner. A role held through a
group counts exactly as one held directly.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from shared.client import ByomClient
from shared.errors import Forbidden
from tests.harness import Gateway
from tests.registry.conftest import create_source, model_body, register_model, unique

OWNER_ONLY = {"owner"}
OWNER_OR_EDITOR = {"owner", "editor"}
OPERATIONS = {
    "source.update": OWNER_OR_EDITOR,
    "source.share": OWNER_ONLY,
    "source.delete": OWNER_ONLY,
    "model.register": OWNER_OR_EDITOR,
    "model.update": OWNER_OR_EDITOR,
    "model.delete": OWNER_OR_EDITOR,
}
CASES = list(
    itertools.product(
        [True, False],
        ["owner", "editor", "viewer", "none"],
        ["user", "group"],
        OPERATIONS,
    )
)


async def _body(root: ByomClient, operation: str, source: str) -> dict[str, Any]:
    if operation == "model.register":
        return model_body(source)
    if operation in ("model.update", "model.delete"):
        model = await register_model(root, source)
        return {
            "rid": model["rid"],
            **({"context_window": 9} if "update" in operation else {}),
        }
    if operation == "source.share":
        return {"rid": source, "principal": "user:someone", "role": "viewer"}
    if operation == "source.update":
        return {"rid": source, "port": 8443}
    return {"rid": source}


@pytest.mark.parametrize(("admin", "role", "via", "operation"), CASES)
async def test_the_permission_matrix(
    shared_gateway: Gateway, admin: bool, role: str, via: str, operation: str
) -> None:
    root = await shared_gateway.client("root", admin=True)
    user, group = unique("user"), unique("team")
    source = (await create_source(root))["rid"]
    if role != "none":
        principal = f"user:{user}" if via == "user" else f"group:{group}"
        await root.registry(
            "source.share", {"rid": source, "principal": principal, "role": role}
        )
    actor = await shared_gateway.client(user, [group], admin=admin)
    body = await _body(root, operation, source)

    if admin and role in OPERATIONS[operation]:
        await actor.registry(operation, body)
    else:
        with pytest.raises(Forbidden):
            await actor.registry(operation, body)
