"""``byom chat``, ``status``, ``token`` and ``usage`` as a user sees them.

Each test runs the CLI against a whole gateway whose one model, house-gpt,
was registered with the CLI itself and answers from a fake OpenAI.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from typer.testing import Result

from shared.identity import ADMIN_ROLE, Principal, TokenVerifier
from shared.service import gateway_version
from tests.cli import byom, byom_json
from tests.fakes.openai import API_KEY, FakeOpenAI, text, text_stream
from tests.harness import AUTH_SECRET, Gateway
from tests.metering.events import TOTALS

MODEL = "house-gpt"
STATUS_COLUMNS = ("service", "instance", "version", "registry_version")


@pytest.fixture
async def provider() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def house_gpt(gateway: Gateway, provider: FakeOpenAI) -> Gateway:
    """A gateway where everyone may call house-gpt, set up with the CLI."""
    await byom_json(
        gateway, "source", "create", "house-openai", "--base-url", provider.base_url,
        "--auth", "bearer", "--secret", API_KEY,
    )  # fmt: skip
    await byom_json(
        gateway, "model", "register", MODEL, "--source", "house-openai",
        "--provider-model", "gpt-4o-mini", "--capability", "streaming",
        "--rpm", "100", "--user-rpm", "100",
    )  # fmt: skip
    await byom_json(gateway, "access", "set", "--enable")
    await settled_version(gateway)
    return gateway


async def settled_version(gateway: Gateway) -> int:
    """Wait until every service has applied the registry's latest version."""
    registry = next(s for s in gateway.services if s.name == "registry")
    for _ in range(100):
        version = registry.registry_version()
        if all(s.registry_version() == version for s in gateway.services):
            return version
        await asyncio.sleep(0.05)
    raise AssertionError("the services never applied the registry's version")


async def chat(gateway: Gateway, *args: str, as_json: bool = False) -> Result:
    """Chat as alice, an ordinary user."""
    return await byom(
        gateway, "chat", *args, token=gateway.token("alice"), as_json=as_json
    )


async def mint(gateway: Gateway, *args: str) -> str:
    """Mint a token with ``byom token``, signed with the gateway's secret."""
    result = await byom(gateway, "token", *args, env={"BYOM_AUTH_SECRET": AUTH_SECRET})
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def metered_rows(gateway: Gateway, requests: int) -> list[dict[str, Any]]:
    """Poll ``byom usage --json`` until metering has stored the requests."""
    for _ in range(200):
        rows = (await byom_json(gateway, "usage", "--group-by", "model"))["rows"]
        if sum(row["requests"] for row in rows) >= requests:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"metering never reached {requests} requests: {rows}")


def table_rows(printed: str) -> list[list[str]]:
    """The body cells of a table the CLI printed, row by row."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in printed.splitlines()
        if line.startswith("│")
    ]


async def test_chat_prints_the_answer_and_stream_prints_the_same_text(
    house_gpt: Gateway, provider: FakeOpenAI
) -> None:
    provider.queue(text("Hello, Alice."), text_stream(["Hello,", " Alice."]))

    plain = await chat(house_gpt, MODEL, "Hi")
    streamed = await chat(house_gpt, "--stream", MODEL, "Hi")

    assert (plain.exit_code, plain.stdout) == (0, "Hello, Alice.\n")
    assert (streamed.exit_code, streamed.stdout) == (0, "Hello, Alice.\n")
    assert plain.stderr == streamed.stderr == "12 prompt + 8 completion tokens\n"
    sent = [request.json["messages"] for request in provider.requests]
    assert sent == [[{"role": "user", "content": "Hi"}]] * 2


async def test_chat_with_json_prints_the_whole_completion(
    house_gpt: Gateway, provider: FakeOpenAI
) -> None:
    provider.queue(text("Hello, Alice.", prompt=21, completion=5))

    result = await chat(house_gpt, MODEL, "Hi", as_json=True)

    assert result.exit_code == 0, result.output
    reply = orjson.loads(result.stdout)
    assert reply["model"] == MODEL
    assert reply["choices"][0]["message"]["content"] == "Hello, Alice."
    tokens = (reply["usage"]["prompt_tokens"], reply["usage"]["completion_tokens"])
    assert tokens == (21, 5)


async def test_chat_to_an_unknown_model_names_it_and_fails(
    house_gpt: Gateway, provider: FakeOpenAI
) -> None:
    result = await chat(house_gpt, "no-such-model", "Hi")

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error not_found: no registered model named 'no-such-model'\n"
    )
    assert provider.requests == []


async def test_status_lists_every_service_with_its_registry_version(
    house_gpt: Gateway,
) -> None:
    version = await settled_version(house_gpt)
    expected = sorted(
        (s.name, s.settings.instance, gateway_version(), version)
        for s in house_gpt.services
    )

    listed = await byom_json(house_gpt, "status")
    shown = await byom(house_gpt, "status", as_json=False)

    assert version > 0
    assert [tuple(r[c] for c in STATUS_COLUMNS) for r in listed] == expected
    assert shown.exit_code == 0, shown.output
    assert [row[:4] for row in table_rows(shown.stdout)] == [
        [str(value) for value in row] for row in expected
    ]


async def test_a_minted_token_carries_its_flags_and_the_gateway_accepts_it(
    gateway: Gateway,
) -> None:
    minted = await mint(
        gateway, "--user", "carol", "--group", "ml", "--group", "ops", "--admin",
        "--ttl", "120",
    )  # fmt: skip

    caller = TokenVerifier(secret=AUTH_SECRET, public_key=None).verify(minted)
    status = await byom(gateway, "status", token=minted)

    assert caller == Principal("carol", ("ml", "ops"), (ADMIN_ROLE,))
    assert 110 < caller.expires_at - time.time() <= 120
    assert status.exit_code == 0, status.output


async def test_status_for_a_user_who_is_not_an_admin_is_forbidden(
    gateway: Gateway,
) -> None:
    minted = await mint(gateway, "--user", "bob")

    result = await byom(gateway, "status", token=minted)

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error forbidden: byom.status is for enrollment administrators\n"
    )


async def test_token_without_a_secret_says_what_to_set(gateway: Gateway) -> None:
    result = await byom(gateway, "token", env={"BYOM_AUTH_SECRET": None})

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error: BYOM_AUTH_SECRET is not set and no local gateway (byom up) "
        "has generated one\n"
    )


async def test_usage_shows_the_calls_sent_as_json_table_and_csv(
    house_gpt: Gateway, provider: FakeOpenAI
) -> None:
    provider.queue(
        text("One.", prompt=21, completion=5), text("Two.", prompt=9, completion=3)
    )
    for message in ("first", "second"):
        assert (await chat(house_gpt, MODEL, message)).exit_code == 0
    expected = {
        "model": MODEL, "requests": 2, "ok": 2, "error": 0, "rate_limited": 0,
        "prompt_tokens": 30, "completion_tokens": 8, "reasoning_tokens": 0,
        "cached_tokens": 0,
    }  # fmt: skip

    rows = await metered_rows(house_gpt, 2)
    shown = await byom(house_gpt, "usage", "--group-by", "model", as_json=False)
    spreadsheet = await byom(
        house_gpt, "usage", "--group-by", "model", "--csv", as_json=False
    )

    columns = ["model", *TOTALS]
    assert [{c: row[c] for c in columns} for row in rows] == [expected]
    assert [row[: len(columns)] for row in table_rows(shown.stdout)] == [
        [str(expected[c]) for c in columns]
    ]
    parsed = list(csv.DictReader(io.StringIO(spreadsheet.stdout)))
    assert [{c: row[c] for c in columns} for row in parsed] == [
        {c: str(expected[c]) for c in columns}
    ]


async def test_usage_with_a_bad_bucket_names_the_field_and_fails(
    gateway: Gateway,
) -> None:
    result = await byom(gateway, "usage", "--bucket", "fortnight", as_json=False)

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "error invalid_request: bucket: Input should be 'minute', 'hour' or 'day' "
        "(received 'fortnight') {'field': 'bucket'}\n"
    )
