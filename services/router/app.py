"""Assemble the router: registry view, limiter client, providers, endpoint."""

from __future__ import annotations

import httpx
from opentelemetry import trace

from services.router.pipeline import InferencePipeline
from services.router.providers import (
    ProviderCaller,
    ProviderSettings,
    build_adapters,
)
from services.router.providers.transport import AiohttpTransport
from services.router.quota import QuotaClient
from services.router.targets import TargetResolver
from services.router.traced import traced
from services.router.usage import UsagePublisher
from shared.registry_view import RegistryFollower
from shared.secrets import SecretBox
from shared.service import Service
from shared.settings import Settings
from shared.transport import Call


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
        self.follower = RegistryFollower(service.nc, service.subjects)
        await self.follower.start()
        # One pooled client for every source: connections are kept per host.
        # Timeouts are set per request by the provider caller; the HTTP itself
        # goes through aiohttp's pool (providers/transport.py says why).
        self._http = httpx.AsyncClient(transport=AiohttpTransport(max_connections=512))
        self._usage = UsagePublisher(
            service.nc, service.subjects, metrics=service.metrics
        )
        await self._usage.start()
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
