"""Assemble the router: registry view, limiter client, providers, endpoint.

Every adapter is wrapped in ``TracedAdapter``, so each provider call is a
CLIENT span with GenAI attributes and lands in the provider latency
histogram, whatever the api.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from types import MappingProxyType
from typing import Any

import httpx
from opentelemetry import trace

from services.router.pipeline import InferencePipeline
from services.router.providers import (
    Adapter,
    ProviderCaller,
    ProviderSettings,
    Target,
    build_adapters,
)
from services.router.providers.transport import AiohttpTransport
from services.router.quota import QuotaClient
from services.router.targets import TargetResolver
from services.router.usage import UsagePublisher
from shared import telemetry
from shared.errors import ByomError
from shared.metrics import Metrics
from shared.registry_view import RegistryFollower
from shared.secrets import SecretBox
from shared.service import Service
from shared.settings import Settings
from shared.transport import Call


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


class Router:
    """The router's moving parts, started after the connection is up."""

    def __init__(self, service: Service) -> None:
        self._service = service
        settings = service.settings
        self._box = SecretBox(settings.secret_key) if settings.secret_key else None
        self._provider_settings = provider_settings(settings)
        self.follower: RegistryFollower | None = None
        self.pipeline: InferencePipeline | None = None
        self._usage: UsagePublisher | None = None
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        service = self._service
        self.follower = RegistryFollower(service.js, service.subjects)
        await self.follower.start()
        # One pooled client for every source: connections are kept per host.
        # Timeouts are set per request by the provider caller; the HTTP itself
        # goes through aiohttp's pool (providers/transport.py says why).
        self._http = httpx.AsyncClient(transport=AiohttpTransport(max_connections=512))
        self._usage = UsagePublisher(
            service.js, service.subjects, metrics=service.metrics
        )
        self.pipeline = InferencePipeline(
            view=self.follower.view,
            quota=QuotaClient(
                service.nc,
                service.subjects,
                service.settings.limiter_timeout_s,
                metrics=service.metrics,
            ),
            usage=self._usage,
            adapters=traced(
                build_adapters(ProviderCaller(self._provider_settings)),
                service.metrics,
            ),
            targets=TargetResolver(self._box),
            http=self._http,
        )

    async def stop(self) -> None:
        if self._usage is not None:
            await self._usage.drain()
        if self._http is not None:
            await self._http.aclose()
        if self.follower is not None:
            await self.follower.stop()

    async def chat(self, call: Call) -> dict[str, object] | None:
        if self.pipeline is None:
            raise RuntimeError("router is not started")
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("gen_ai.operation.name", "chat")
            model = call.body.get("model")
            if isinstance(model, str):
                span.set_attribute("gen_ai.request.model", model)
        return await self.pipeline.chat(call)

    def registry_version(self) -> int:
        return self.follower.view.version if self.follower else 0


def provider_settings(settings: Settings) -> ProviderSettings:
    """Take the provider timeouts and retry bounds from the service settings."""
    return ProviderSettings(
        timeout_s=settings.provider_timeout_s,
        connect_timeout_s=settings.provider_connect_timeout_s,
        retry_budget_s=settings.provider_retry_budget_s,
        max_attempts=settings.provider_max_attempts,
    )


def build(settings: Settings) -> Service:
    service = Service("router", settings)
    router = Router(service)
    service.components.append(router)
    service.registry_version = router.registry_version
    service.serve(service.subjects.inference_chat, router.chat)
    return service
