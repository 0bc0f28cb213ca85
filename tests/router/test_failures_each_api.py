"""Provider failures through NATS for every endpoint api: 429, 500, timeout."""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import ProviderError, ProviderTimeout
from tests.fakes.server import FakeServer, Reply
from tests.harness import Gateway
from tests.router.conftest import PROVIDER_ATTEMPTS, PROVIDER_TIMEOUT_S
from tests.router.kits import Kit
from tests.router.scene import APP, ask, enroll, event_of, new_request_id

ATTEMPTS = PROVIDER_ATTEMPTS


async def test_a_throttled_call_is_retried_after_the_providers_retry_after(
    gateway: Gateway, kit: Kit, provider: FakeServer
) -> None:
    """A 429 with Retry-After is waited out, then the call succeeds."""
    scene = await enroll(gateway, kit, provider)
    provider.queue(
        kit.error(429, "slow down", {"retry-after": "0.4"}), kit.text("Made it.")
    )
    clock = asyncio.get_running_loop()
    started = clock.time()

    reply = await scene.chat(ask())

    assert clock.time() - started >= 0.4
    assert reply["choices"][0]["message"]["content"] == "Made it."
    assert len(provider.requests) == 2


async def test_a_provider_that_keeps_throttling_gives_provider_error_429(
    gateway: Gateway, kit: Kit, provider: FakeServer
) -> None:
    """Once the retries are spent the caller sees the provider's status."""
    scene = await enroll(gateway, kit, provider)
    throttled = kit.error(429, "slow down", {"retry-after": "0.1"})
    provider.queue(*[throttled] * ATTEMPTS)
    request_id = new_request_id()

    with pytest.raises(ProviderError) as caught:
        await scene.chat(ask(), request_id=request_id)

    assert caught.value.extra["provider_status"] == 429
    assert "slow down" in caught.value.message
    event = event_of(await scene.usage_events(1), request_id)
    assert (event["status"], event["error_code"]) == ("error", "provider_error")


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_a_provider_500_is_a_provider_error_with_its_status(
    gateway: Gateway, kit: Kit, provider: FakeServer, stream: bool
) -> None:
    """The caller gets provider_error naming 500 and the provider's message."""
    scene = await enroll(gateway, kit, provider)
    provider.queue(*[kit.error(500, "the model crashed", {})] * ATTEMPTS)
    request_id = new_request_id()

    call = (
        scene.stream(ask(stream=True), request_id=request_id)
        if stream
        else scene.chat(ask(), request_id=request_id)
    )

    with pytest.raises(ProviderError) as caught:
        await call

    assert caught.value.extra["provider_status"] == 500
    assert "the model crashed" in caught.value.message
    assert len(provider.requests) == ATTEMPTS
    event = event_of(await scene.usage_events(1), request_id)
    assert (event["status"], event["error_code"], event["stream"]) == (
        "error",
        "provider_error",
        stream,
    )
    assert (event["prompt_tokens"], event["completion_tokens"]) == (0, 0)


async def test_a_provider_that_never_answers_is_a_provider_timeout(
    gateway: Gateway, kit: Kit, provider: FakeServer
) -> None:
    """BYOM_PROVIDER_TIMEOUT_S bounds the wait; the call is not retried."""
    scene = await enroll(gateway, kit, provider)
    provider.queue(Reply.hanging())
    request_id = new_request_id()
    clock = asyncio.get_running_loop()
    started = clock.time()

    with pytest.raises(ProviderTimeout):
        await scene.user.chat(ask(), **APP, request_id=request_id)

    assert clock.time() - started < 2 * PROVIDER_TIMEOUT_S + 1
    assert len(provider.requests) == 1
    event = event_of(await scene.usage_events(1), request_id)
    assert (event["status"], event["error_code"]) == ("error", "provider_timeout")
