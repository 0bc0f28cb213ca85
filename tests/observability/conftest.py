"""An in-memory span exporter for the whole test process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from shared import telemetry


@pytest.fixture(scope="session")
def session_spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider = trace.get_tracer_provider()
    # The global provider can be set once per process: join one that exists.
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(processor)
    else:
        telemetry.install_provider("tests", [processor])
    return exporter


@pytest.fixture
def spans(session_spans: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    session_spans.clear()
    yield session_spans
    session_spans.clear()
