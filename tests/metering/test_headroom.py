"""Administrators see how much of each level's rpm and tpm a model used."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.errors import Forbidden, InvalidRequest, NotFound
from tests.e2e.test_walking_skeleton import HELLO, register, wait_for_usage
from tests.fakes.openai import FakeOpenAI
from tests.harness import Gateway

TOKENS = 12 + 8
"""What the fake provider reports for every call: 12 prompt, 8 completion."""


@pytest.fixture
async def provider() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def per_party(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], Any]:
    """Add minutes up (the calls may straddle a minute) per scope and party."""
    totals: dict[tuple[str, str | None], dict[str, Any]] = defaultdict(dict)
    for row in rows:
        total = totals[(row["scope"], row["party"])]
        total["requests"] = total.get("requests", 0) + row["requests"]
        total["tokens"] = total.get("tokens", 0) + row["tokens"]
        total["limits"] = (row["rpm"], row["tpm"])
    return dict(totals)


async def test_each_level_shows_its_usage_against_its_limits(
    gateway: Gateway, provider: FakeOpenAI
) -> None:
    admin = await gateway.client("root", admin=True)
    model = await register(admin, provider, rpm=100)
    await admin.registry("access.set", {"enabled": True, "groups": None})
    await admin.registry(
        "project_limits.set", {"model": model["rid"], "project": "proj-b", "rpm": 5}
    )
    alice, bob = await gateway.client("alice"), await gateway.client("bob")
    for _ in range(3):
        await alice.chat(HELLO, application="workshop", project="proj-a")
    for _ in range(2):
        await bob.chat(HELLO, application="aip-logic", project="proj-b")
    await wait_for_usage(admin, 5)

    reply = await admin.usage({"view": "limits", "model": "house-gpt"})

    assert per_party(reply["rows"]) == {
        ("enrollment", None): {
            "requests": 5, "tokens": 5 * TOKENS, "limits": (100, 100_000)
        },
        ("project", "proj-a"): {
            "requests": 3, "tokens": 3 * TOKENS, "limits": (70, 70_000)
        },
        ("project", "proj-b"): {
            "requests": 2, "tokens": 2 * TOKENS, "limits": (5, 70_000)
        },
        # aip-logic is not user-attributed: bob has no user-level row.
        ("user", "alice"): {"requests": 3, "tokens": 3 * TOKENS, "limits": (100, None)},
    }  # fmt: skip
    first = reply["rows"][0]
    assert first["rpm_headroom"] == first["rpm"] - first["requests"]
    assert first["rpm_used_pct"] == round(100 * first["requests"] / first["rpm"], 1)


async def test_filters_keep_the_enrollment_and_the_chosen_project(
    gateway: Gateway, provider: FakeOpenAI
) -> None:
    admin = await gateway.client("root", admin=True)
    await register(admin, provider)
    await admin.registry("access.set", {"enabled": True, "groups": None})
    user = await gateway.client("alice")
    await user.chat(HELLO, application="aip-logic", project="proj-a")
    await user.chat(HELLO, application="aip-logic", project="proj-b")
    await wait_for_usage(admin, 2)

    reply = await admin.usage(
        {"view": "limits", "model": "house-gpt", "filters": {"project": "proj-b"}}
    )

    assert {(k, v["requests"]) for k, v in per_party(reply["rows"]).items()} == {
        (("enrollment", None), 2),
        (("project", "proj-b"), 1),
    }


async def test_usage_against_limits_is_for_administrators(
    gateway: Gateway, provider: FakeOpenAI
) -> None:
    admin = await gateway.client("root", admin=True)
    await register(admin, provider)
    user = await gateway.client("alice")
    with pytest.raises(Forbidden, match="administrators"):
        await user.usage({"view": "limits", "model": "house-gpt"})
    with pytest.raises(NotFound, match="no-such-model"):
        await admin.usage({"view": "limits", "model": "no-such-model"})
    with pytest.raises(InvalidRequest) as caught:
        await admin.usage({"view": "limits"})
    assert caught.value.field == "model"
