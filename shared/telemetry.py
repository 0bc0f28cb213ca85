"""OpenTelemetry set-up and W3C trace context carried in NATS headers.

Spans are always created (sampled by the standard ``OTEL_TRACES_SAMPLER``
rule, parent-based by default); they are exported with OTLP only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is
set. Tests install their own in-memory exporter with ``install_provider``.

Provider calls are described with the OpenTelemetry GenAI semantic
conventions (``gen_ai.*``): model, provider, token counts and finish
reasons. Prompt and completion content never go into a span.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def configure_tracing(service: str) -> None:
    """Install this process's tracer provider, exporting when configured."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    processors: list[SpanProcessor] = []
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    install_provider(service, processors)


def install_provider(service: str, processors: list[SpanProcessor]) -> None:
    """Make a tracer provider with these processors the global one."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"byom-{service}"})
    )
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Write the current trace context into outgoing message headers."""
    propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str] | None) -> context.Context:
    """Read the caller's trace context from incoming message headers."""
    return propagate.extract(headers or {})


# GenAI semantic conventions name the provider by these values.
GENAI_PROVIDERS = {
    "openai_chat": "openai",
    "azure_openai_chat": "azure.ai.openai",
    "anthropic_messages": "anthropic",
    "bedrock_converse": "aws.bedrock",
    "gemini_generate_content": "gcp.gemini",
}


def genai_request_attributes(
    api: str, provider_model: str, base_url: str, request: Mapping[str, Any]
) -> dict[str, Any]:
    """Describe a provider call for its span: never the prompt, never a key."""
    provider = GENAI_PROVIDERS.get(api, api)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": provider,
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": provider_model,
        "server.address": urlsplit(base_url).hostname or "",
        "byom.endpoint.api": api,
    }
    for key, name in _REQUEST_PARAMETERS.items():
        value = request.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    return attributes


_REQUEST_PARAMETERS = {
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
}


def genai_response_attributes(completion: Mapping[str, Any]) -> dict[str, Any]:
    """Describe an OpenAI-shaped completion or closing chunk: counts only."""
    attributes: dict[str, Any] = {}
    usage = completion.get("usage")
    if isinstance(usage, Mapping):
        attributes["gen_ai.usage.input_tokens"] = int(usage.get("prompt_tokens") or 0)
        attributes["gen_ai.usage.output_tokens"] = int(
            usage.get("completion_tokens") or 0
        )
    reasons = finish_reasons(completion)
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    if isinstance(completion.get("id"), str):
        attributes["gen_ai.response.id"] = completion["id"]
    return attributes


def finish_reasons(completion: Mapping[str, Any]) -> list[str]:
    """The finish reasons of a completion's or chunk's choices, in order."""
    return [
        str(choice["finish_reason"])
        for choice in completion.get("choices") or []
        if isinstance(choice, Mapping) and choice.get("finish_reason")
    ]
