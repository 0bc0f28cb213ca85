"""One request end to end: register, enable access, chat, see it metered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.client import ByomClient
from shared.errors import (
    AccessNotEnabled,
    Forbidden,
    InvalidRequest,
    RateLimited,
    Unauthenticated,
)
from tests.fakes.openai import API_KEY, FakeOpenAI, text
from tests.harness import Gateway

APP = {"application": "workshop", "project": "proj-a"}
HELLO = {"model": "house-gpt", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
async def provider() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


async def register(
    admin: ByomClient, provider: FakeOpenAI, *, rpm: int = 100
) -> dict[str, Any]:
    source = await admin.registry(
        "source.create",
        {
            "name": "house-openai",
            "base_url": provider.base_url,
            "auth": {"type": "bearer", "secret": API_KEY},
        },
    )
    return await admin.registry(
        "model.register",
        {
            "source": source["rid"],
            "name": "house-gpt",
            "provider": "openai",
            "provider_model": "gpt-4o-mini",
            "endpoints": [
                {
                    "api": "openai_chat",
                    "path": "/v1/chat/completions",
                    "capabilities": ["streaming", "tool_calling"],
                }
            ],
            "limits": {
                "enrollment": {"rpm": rpm, "tpm": 100_000},
                "user": {"rpm": rpm},
            },
        },
    )


async def wait_for_usage(client: ByomClient, requests: int) -> list[dict[str, Any]]:
    """Poll metering until it has stored the expected number of requests."""
    for _ in range(200):
        rows = (await client.usage({"group_by": ["model"]}))["rows"]
        if sum(row["requests"] for row in rows) >= requests:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"metering never reached {requests} requests: {rows}")


async def test_a_registered_model_answers_and_the_call_is_metered(
    gateway: Gateway, provider: FakeOpenAI
) -> None:
    admin = await gateway.client("root", admin=True)
    await register(admin, provider)
    await admin.registry("access.set", {"enabled": True, "groups": None})
    provider.queue(text("Hello, Alice.", prompt=21, completion=5))

    user = await gateway.client("alice", ["analysts"])
    reply = await user.chat(HELLO, **APP)

    assert reply["choices"][0]["message"]["content"] == "Hello, Alice."
    assert reply["model"] == "house-gpt"
    assert provider.requests[-1].json["model"] == "gpt-4o-mini"
    rows = await wait_for_usage(admin, 1)
    assert [
        (r["model"], r["requests"], r["ok"], r["prompt_tokens"], r["completion_tokens"])
        for r in rows
    ] == [("house-gpt", 1, 1, 21, 5)]


async def test_a_source_reply_never_shows_its_secret(
    gateway: Gateway, provider: FakeOpenAI
) -> None:
    admin = await gateway.client("root", admin=True)
    await register(admin, provider)
    listed = await admin.registry("source.list", {})
    assert API_KEY not in repr(listed)
    assert listed["sources"][0]["auth"] == {"type": "bearer"}


async def test_calls_without_a_valid_token_are_unauthenticated(
    gateway: Gateway,
) -> None:
    anonymous = await gateway.client(token="")
    forged = await gateway.client(token=gateway.token("root", admin=True)[:-4] + "abcd")
    with pytest.raises(Unauthenticated, match="missing Authorization"):
        await anonymous.chat(HELLO, **APP)
    with pytest.raises(Unauthenticated, match="invalid token"):
        await forged.registry("source.list", {})


async def test_a_non_admin_cannot_create_a_source(gateway: Gateway) -> None:
    user = await gateway.client("mallory")
    with pytest.raises(Forbidden, match="enrollment administrators"):
        await user.registry(
            "source.create", {"name": "x", "base_url": "http://127.0.0.1:1"}
        )


async def test_a_bad_registration_names_the_field(gateway: Gateway) -> None:
    admin = await gateway.client("root", admin=True)
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry(
            "source.create", {"name": "bad", "base_url": "ftp://example.com"}
        )
    assert caught.value.field == "base_url"
    assert "http://" in caught.value.message


async def test_chat_before_access_is_enabled_is_refused(
    gateway: Gateway, provider: FakeOpenAI
) -> None:
    admin = await gateway.client("root", admin=True)
    await register(admin, provider)
    user = await gateway.client("alice")
    with pytest.raises(AccessNotEnabled):
        await user.chat(HELLO, **APP)
    assert provider.requests == []


async def test_the_enrollment_rpm_refuses_the_call_past_the_limit(
    gateway: Gateway, provider: FakeOpenAI
) -> None:
    admin = await gateway.client("root", admin=True)
    await register(admin, provider, rpm=2)
    await admin.registry("access.set", {"enabled": True, "groups": None})
    user = await gateway.client("alice")

    await user.chat(HELLO, **APP)
    await user.chat(HELLO, application="aip-logic", project="proj-b")
    with pytest.raises(RateLimited) as caught:
        await user.chat(HELLO, application="aip-logic", project="proj-c")

    assert caught.value.extra["scope"] == "enrollment"
    assert caught.value.extra["limit"] == "rpm"
    # A charge is held 60 to 61 s at one-second resolution (docs/limits.md).
    assert 0 < caught.value.extra["retry_after_s"] <= 61
    assert len(provider.requests) == 2
