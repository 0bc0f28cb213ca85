"""One inference request is one trace: client, router, limiter, provider, metering."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind

from tests.e2e.test_walking_skeleton import register, wait_for_usage
from tests.fakes.openai import API_KEY, FakeOpenAI, text, text_stream
from tests.harness import Gateway

PROMPT = "The launch code is swordfish-4711"
REQUEST = {"model": "house-gpt", "messages": [{"role": "user", "content": PROMPT}]}
APP = {"application": "workshop", "project": "proj-a"}


@pytest.fixture
async def provider() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


async def serve_model(gateway: Gateway, provider: FakeOpenAI) -> None:
    admin = await gateway.client("root", admin=True)
    await register(admin, provider)
    await admin.registry("access.set", {"enabled": True, "groups": None})


def one_named(
    spans: Sequence[ReadableSpan], name: str, *, prefix: bool = False
) -> ReadableSpan:
    found = [
        span
        for span in spans
        if span.name == name or (prefix and span.name.startswith(name + "."))
    ]
    assert len(found) == 1, f"expected one {name!r} span, got {[s.name for s in spans]}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def traced_call(
    gateway: Gateway, spans: InMemorySpanExporter, *, stream: bool
) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """Call the model inside a client span; return it and its trace's spans."""
    user = await gateway.client("alice")
    admin = await gateway.client("root", admin=True)
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("client chat", kind=SpanKind.CLIENT) as root:
        if stream:
            async for _ in user.chat_stream(REQUEST, **APP):
                pass
        else:
            await user.chat(REQUEST, **APP)
    await wait_for_usage(admin, 1)
    root_span = next(s for s in spans.get_finished_spans() if s.name == "client chat")
    trace_id = root.get_span_context().trace_id
    in_trace = [
        s
        for s in spans.get_finished_spans()
        if s.context is not None and s.context.trace_id == trace_id
    ]
    return root_span, in_trace


async def test_one_request_is_one_trace_with_correct_parents(
    gateway: Gateway, provider: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    await serve_model(gateway, provider)
    provider.queue(text("Noted.", prompt=21, completion=5))

    root, in_trace = await traced_call(gateway, spans, stream=False)

    router = one_named(in_trace, "router inference.chat")
    acquire = one_named(in_trace, "limiter acquire")
    # The limiter may serve acquire on one subject per partition.
    limiter = one_named(in_trace, "limiter limiter.acquire", prefix=True)
    call = one_named(in_trace, "chat gpt-4o-mini")
    ingest = one_named(in_trace, "metering ingest")
    assert (router.kind, acquire.kind, limiter.kind) == (
        SpanKind.SERVER, SpanKind.CLIENT, SpanKind.SERVER,
    )  # fmt: skip
    assert (call.kind, ingest.kind) == (SpanKind.CLIENT, SpanKind.CONSUMER)
    assert parent_of(router) == span_id(root)
    assert parent_of(acquire) == span_id(router)
    assert parent_of(limiter) == span_id(acquire)
    assert parent_of(call) == span_id(router)
    assert parent_of(ingest) == span_id(router)


async def test_the_provider_span_follows_the_genai_conventions(
    gateway: Gateway, provider: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    await serve_model(gateway, provider)
    provider.queue(text("Noted.", prompt=21, completion=5))

    _, in_trace = await traced_call(gateway, spans, stream=False)

    call = one_named(in_trace, "chat gpt-4o-mini")
    attributes = dict(call.attributes or {})
    assert {
        key: attributes.get(key)
        for key in (
            "gen_ai.operation.name",
            "gen_ai.system",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.response.finish_reasons",
            "server.address",
        )
    } == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 21,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.finish_reasons": ("stop",),
        "server.address": "127.0.0.1",
    }


async def test_a_streamed_request_is_traced_the_same_way(
    gateway: Gateway, provider: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    await serve_model(gateway, provider)
    provider.queue(text_stream(["Noted", "."]))

    _, in_trace = await traced_call(gateway, spans, stream=True)

    router = one_named(in_trace, "router inference.chat")
    call = one_named(in_trace, "chat gpt-4o-mini")
    ingest = one_named(in_trace, "metering ingest")
    assert parent_of(call) == span_id(router)
    assert parent_of(ingest) == span_id(router)
    assert dict(call.attributes or {})["gen_ai.response.finish_reasons"] == ("stop",)
    assert dict(call.attributes or {})["gen_ai.usage.output_tokens"] == 8


async def test_no_span_holds_the_prompt_or_a_secret(
    gateway: Gateway, provider: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    await serve_model(gateway, provider)
    provider.queue(text("Noted.", prompt=21, completion=5))

    _, in_trace = await traced_call(gateway, spans, stream=False)

    everything = orjson.dumps(
        [
            {"name": s.name, "attributes": dict(s.attributes or {})}
            for s in spans.get_finished_spans()
        ]
    ).decode()
    assert len(in_trace) >= 5
    for secret in ("swordfish", API_KEY, "Bearer", gateway.settings.auth_secret):
        assert secret not in everything
