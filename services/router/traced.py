"""Provider calls as GenAI CLIENT spans, timed in the latency histogram.

Every adapter is wrapped in ``TracedAdapter`` when the router starts, so
each provider call is traced and timed whatever the api.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from types import MappingProxyType
from typing import Any

import httpx
from opentelemetry import trace

from services.router.providers import Adapter, Target
from shared import telemetry
from shared.errors import ByomError
from shared.metrics import Metrics


class TracedAdapter:
    """Run an adapter's calls inside a GenAI CLIENT span, and time them."""

    def __init__(self, adapter: Adapter, metrics: Metrics) -> None:
        self._adapter = adapter
        self._metrics = metrics
        self._tracer = telemetry.tracer("byom.router")

    async def complete(
        self, client: httpx.AsyncClient, target: Target, request: dict[str, Any]
    ) -> dict[str, Any]:
        with self._tracer.start_as_current_span(
            f"chat {target.provider_model}",
            kind=trace.SpanKind.CLIENT,
            attributes=self._request_attributes(target, request),
            end_on_exit=False,
        ) as span:
            started = time.perf_counter()
            outcome = "error"
            try:
                completion = await self._adapter.complete(client, target, request)
                outcome = "ok"
                span.set_attributes(telemetry.genai_response_attributes(completion))
            except ByomError as exc:
                outcome = exc.code
                raise
            finally:
                _close(span, outcome)
                self._observe(target, outcome, started)
            return completion

    async def stream(
        self, client: httpx.AsyncClient, target: Target, request: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        # Not made current: a generator's context would leak into the
        # caller's between chunks.
        span = self._tracer.start_span(
            f"chat {target.provider_model}",
            kind=trace.SpanKind.CLIENT,
            attributes=self._request_attributes(target, request),
        )
        started = time.perf_counter()
        outcome, reasons = "error", []
        try:
            chunks = self._adapter.stream(client, target, request)
            async with aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    reasons += telemetry.finish_reasons(chunk)
                    if isinstance(chunk.get("usage"), dict):
                        span.set_attributes(telemetry.genai_response_attributes(chunk))
                    yield chunk
            outcome = "ok"
        except ByomError as exc:
            outcome = exc.code
            raise
        finally:
            if reasons:
                span.set_attribute("gen_ai.response.finish_reasons", reasons)
            _close(span, outcome)
            self._observe(target, outcome, started)

    def _request_attributes(
        self, target: Target, request: dict[str, Any]
    ) -> dict[str, Any]:
        return telemetry.genai_request_attributes(
            target.api, target.provider_model, target.base_url, request
        )

    def _observe(self, target: Target, outcome: str, started: float) -> None:
        provider = telemetry.GENAI_PROVIDERS.get(target.api, target.api)
        self._metrics.provider_latency.labels(provider, outcome).observe(
            time.perf_counter() - started
        )


def _close(span: trace.Span, outcome: str) -> None:
    if outcome != "ok":
        span.set_attribute("error.type", outcome)
        span.set_status(trace.StatusCode.ERROR, outcome)
    span.end()


def traced(adapters: Mapping[str, Adapter], metrics: Metrics) -> Mapping[str, Adapter]:
    """Wrap every adapter so its calls are traced and timed."""
    return MappingProxyType(
        {api: TracedAdapter(adapter, metrics) for api, adapter in adapters.items()}
    )
