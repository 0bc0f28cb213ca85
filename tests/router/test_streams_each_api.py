"""Streams through NATS for every endpoint api: usage, estimates, cut-offs."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from services.router.estimates import completion_tokens_of
from shared.transport import STREAM_HEADER
from tests.fakes.server import FakeServer
from tests.harness import Gateway
from tests.router.kits import Kit
from tests.router.scene import APP, MODEL, ask, enroll, event_of, new_request_id

PIECES = ["The quick ", "brown fox ", "jumps over ", "the lazy dog."]


def text_of(chunks: list[dict[str, Any]]) -> str:
    """Join the content deltas of a stream."""
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in chunk["choices"]
    )


async def test_a_stream_relays_chunks_in_order_and_ends_with_provider_usage(
    gateway: Gateway, kit: Kit, provider: FakeServer
) -> None:
    """Chunks arrive in order; the last one is usage-only, as reported."""
    scene = await enroll(gateway, kit, provider)
    provider.queue(kit.stream(PIECES, True, 0.0))
    request_id = new_request_id()

    chunks = await scene.stream(ask(stream=True), request_id=request_id)

    assert text_of(chunks) == "".join(PIECES)
    *body, last = chunks
    assert all(chunk["choices"] and "usage" not in chunk for chunk in body)
    assert {chunk["model"] for chunk in chunks} == {MODEL}
    assert last["choices"] == []
    assert body[-1]["choices"][0]["finish_reason"] == "stop"
    event = event_of(await scene.usage_events(1), request_id)
    assert (event["status"], event["stream"], event["usage_source"]) == (
        "ok",
        True,
        "provider",
    )
    assert event["prompt_tokens"] == last["usage"]["prompt_tokens"]
    assert event["completion_tokens"] == last["usage"]["completion_tokens"]
    assert event["ttft_ms"] > 0


async def test_a_stream_without_provider_usage_ends_with_an_estimate(
    gateway: Gateway, kit: Kit, provider: FakeServer
) -> None:
    """The gateway estimates the counts and says so in the usage event."""
    scene = await enroll(gateway, kit, provider)
    provider.queue(kit.stream(PIECES, False, 0.0))
    request_id = new_request_id()

    chunks = await scene.stream(ask(stream=True), request_id=request_id)

    assert text_of(chunks) == "".join(PIECES)
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == completion_tokens_of(len("".join(PIECES)))
    assert usage["prompt_tokens"] > 0
    event = event_of(await scene.usage_events(1), request_id)
    assert (event["status"], event["usage_source"]) == ("ok", "estimated")
    assert event["completion_tokens"] == usage["completion_tokens"]


async def test_a_client_leaving_mid_stream_cancels_the_provider_call(
    gateway: Gateway, kit: Kit, provider: FakeServer
) -> None:
    """The provider sees the disconnect soon; one event counts what was sent."""
    scene = await enroll(gateway, kit, provider)
    provider.queue(kit.stream(["word, "] * 60, True, 0.1))
    request_id = new_request_id()
    received: list[dict[str, Any]] = []

    stream = scene.user.chat_stream(ask(stream=True), **APP, request_id=request_id)
    async for chunk in stream:
        received.append(chunk)
        if len(text_of(received)) >= 18:
            break
    del stream  # Dropping the generator closes it, as after a plain `break`.
    left = asyncio.get_running_loop().time()
    await provider.wait_disconnect(timeout_s=3.0)

    assert asyncio.get_running_loop().time() - left < 2.5
    event = event_of(await scene.usage_events(1), request_id)
    assert (event["status"], event["error_code"], event["usage_source"]) == (
        "error",
        "client_gone",
        "estimated",
    )
    produced = event["completion_tokens"]
    assert completion_tokens_of(len(text_of(received))) <= produced
    assert produced < completion_tokens_of(len("word, ") * 60)


async def test_a_silent_provider_is_cancelled_when_its_client_leaves(
    nats_url: str, tmp_path: Any, openai_kit: Kit, openai_provider: FakeServer
) -> None:
    """Liveness is probed while the provider sends nothing, not only per chunk."""
    from tests.harness import gateway_settings

    slow = Gateway(
        gateway_settings(nats_url, tmp_path / "data", provider_timeout_s=10.0)
    )
    await slow.start()
    try:
        scene = await enroll(slow, openai_kit, openai_provider)
        openai_provider.queue(openai_kit.stream(["a", "b", "c", "d"], True, 3.0))
        stream = scene.user.chat_stream(ask(stream=True), **APP)
        async for _ in stream:
            break
        del stream
        left = asyncio.get_running_loop().time()
        await openai_provider.wait_disconnect(timeout_s=5.0)
        assert asyncio.get_running_loop().time() - left < 2.5
    finally:
        await slow.stop()


async def test_the_stream_protocol_marks_the_last_message_and_answers_pings(
    gateway: Gateway, openai_kit: Kit, openai_provider: FakeServer
) -> None:
    """Every chunk is one message; only the last carries ``Byom-Stream: end``."""
    scene = await enroll(gateway, openai_kit, openai_provider)
    openai_provider.queue(openai_kit.stream(["one "] * 6, True, 0.4))
    nc = scene.user.nc
    inbox = nc.new_inbox()
    messages: asyncio.Queue[Any] = asyncio.Queue()
    subscription = await nc.subscribe(inbox, cb=messages.put)
    headers = scene.user.headers(
        **{"Byom-Application": "workshop", "Byom-Project": "proj-a"}
    )
    await nc.publish(
        gateway.subjects.inference_chat,
        orjson.dumps(ask(stream=True)),
        reply=inbox,
        headers=headers,
    )

    kinds = []
    while True:
        msg = await asyncio.wait_for(messages.get(), 5.0)
        kind = (msg.headers or {}).get(STREAM_HEADER, "chunk")
        kinds.append(kind)
        if kind == "ping":
            await nc.publish(msg.reply, b"")
        if kind == "end":
            break
    await subscription.unsubscribe()

    chunks = [kind for kind in kinds if kind != "ping"]
    assert chunks == ["chunk"] * 8 + ["end"]
    assert "ping" in kinds
    assert orjson.loads(msg.data)["usage"]["prompt_tokens"] == 12
