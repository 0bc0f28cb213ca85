"""OpenTelemetry set-up and W3C trace context carried in NATS headers.

Spans are always created (sampled by the standard ``OTEL_TRACES_SAMPLER``
rule, parent-based by default); they are exported with OTLP only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is
set. Tests install their own in-memory exporter with ``install_provider``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

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
