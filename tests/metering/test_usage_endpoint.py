"""``byom.metering.usage`` over NATS: who sees what, and bad queries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.errors import InvalidRequest
from tests.e2e.test_walking_skeleton import HELLO, register, wait_for_usage
from tests.fakes.openai import FakeOpenAI
from tests.harness import Gateway


@pytest.fixture
async def provider() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


async def test_a_user_sees_only_their_own_rows_and_an_admin_sees_all(
    gateway: Gateway, provider: FakeOpenAI
) -> None:
    admin = await gateway.client("root", admin=True)
    await register(admin, provider)
    await admin.registry("access.set", {"enabled": True, "groups": None})
    alice, bob = await gateway.client("alice"), await gateway.client("bob")
    await alice.chat(HELLO, application="workshop", project="p")
    for _ in range(2):
        await bob.chat(HELLO, application="workshop", project="p")
    await wait_for_usage(admin, 3)

    query = {"group_by": ["user"], "filters": {"user": "bob"}}
    mine = (await alice.usage(query))["rows"]
    everyone = (await admin.usage({"group_by": ["user"]}))["rows"]

    assert [(row["user"], row["requests"]) for row in mine] == [("alice", 1)]
    assert [(row["user"], row["requests"]) for row in everyone] == [
        ("alice", 1),
        ("bob", 2),
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"group_by": ["region"]}, "group_by.0"),
        ({"bucket": "fortnight"}, "bucket"),
        ({"to": "not a time"}, "to"),
        ({"filters": {"colour": "red"}}, "filters.colour"),
    ],
)
async def test_a_bad_usage_query_is_refused_naming_the_field(
    gateway: Gateway, query: dict[str, object], field: str
) -> None:
    user = await gateway.client("alice")
    with pytest.raises(InvalidRequest) as caught:
        await user.usage(query)
    assert caught.value.field == field
