"""The inference path: checks, quota, provider call, settlement, usage event.

Every request that passes authentication produces exactly one usage event,
whatever its outcome; ``Attempt`` gathers what goes into it as the request
moves along, and the pipeline publishes it once at the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from services.router.checks import Admission, admit, output_allowance
from services.router.estimates import estimated_usage
from services.router.providers import Adapter, Target
from services.router.providers.capabilities import (
    capabilities_used,
    estimate_prompt_tokens,
)
from services.router.quota import QuotaClient
from services.router.streaming import relay_stream, send_stream_error
from services.router.targets import TargetResolver
from services.router.usage import UsagePublisher
from shared import telemetry
from shared.contracts.limiter import QuotaRequest, Settlement
from shared.contracts.usage import UsageEvent
from shared.errors import ByomError, RateLimited
from shared.logs import bind_context
from shared.registry_view import RegistryView
from shared.transport import (
    APPLICATION_HEADER,
    PROJECT_HEADER,
    REQUEST_ID_HEADER,
    Call,
)


@dataclass(slots=True)
class Attempt:
    """What one inference request did, for its usage event."""

    request_id: str
    started: float
    model: str
    user: str
    application: str | None
    project: str | None
    stream: bool
    provider: str | None = None
    status: str = "error"
    error_code: str | None = None
    usage: dict[str, Any] | None = None
    usage_source: str = "estimated"
    estimated_prompt: int = 0
    ttft_ms: float | None = None

    def event(self) -> UsageEvent:
        usage = self.usage or {}
        completion_details = usage.get("completion_tokens_details") or {}
        prompt_details = usage.get("prompt_tokens_details") or {}
        prompt = usage.get("prompt_tokens", self.estimated_prompt if self.usage else 0)
        return UsageEvent(
            request_id=self.request_id,
            time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            model=self.model,
            provider=self.provider,
            project=self.project,
            user=self.user,
            application=self.application,
            status=self.status,
            error_code=self.error_code,
            prompt_tokens=prompt or 0,
            completion_tokens=usage.get("completion_tokens", 0) or 0,
            reasoning_tokens=completion_details.get("reasoning_tokens", 0) or 0,
            cached_tokens=prompt_details.get("cached_tokens", 0) or 0,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            ttft_ms=self.ttft_ms,
            stream=self.stream,
            usage_source=self.usage_source,
        )


class InferencePipeline:
    """Answer ``byom.inference.chat`` requests."""

    def __init__(
        self,
        *,
        view: RegistryView,
        quota: QuotaClient,
        usage: UsagePublisher,
        adapters: Mapping[str, Adapter],
        targets: TargetResolver,
        http: httpx.AsyncClient,
    ) -> None:
        self._view = view
        self._quota = quota
        self._usage = usage
        self._adapters = adapters
        self._targets = targets
        self._http = http

    async def chat(self, call: Call) -> dict[str, Any] | None:
        """Run one request through checks, quota and the provider."""
        attempt = self._attempt(call)
        try:
            return await self._run(call, attempt)
        except ByomError as exc:
            attempt.status = "rate_limited" if isinstance(exc, RateLimited) else "error"
            attempt.error_code = exc.code
            if not attempt.stream:
                raise
            await send_stream_error(call, exc)
            return None
        finally:
            self._usage.publish(attempt.event(), dict(telemetry.inject({})))

    def _attempt(self, call: Call) -> Attempt:
        request_id = call.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        model = call.body.get("model")
        attempt = Attempt(
            request_id=request_id,
            started=time.perf_counter(),
            model=model if isinstance(model, str) and model else "_",
            user=call.caller.user,
            application=call.headers.get(APPLICATION_HEADER),
            project=call.headers.get(PROJECT_HEADER),
            stream=call.body.get("stream") is True,
        )
        bind_context(
            request_id=request_id, model=attempt.model, project=attempt.project
        )
        return attempt

    async def _run(self, call: Call, attempt: Attempt) -> dict[str, Any] | None:
        body = call.body
        needs = capabilities_used(body)
        admission = admit(
            self._view,
            caller=call.caller,
            app_name=attempt.application,
            project=attempt.project,
            request=body,
            needs=needs,
        )
        attempt.provider = admission.model["provider"]
        attempt.estimated_prompt = estimate_prompt_tokens(body)
        tokens = attempt.estimated_prompt + output_allowance(admission.model, body)
        user = call.caller.user if admission.app.user_attributed else None
        reservation = await self._quota.acquire(
            QuotaRequest(
                request_id=attempt.request_id,
                model=admission.model["rid"],
                project=admission.project,
                user=user,
                tokens=tokens,
            )
        )
        target = self._targets.target(admission)
        try:
            result = await self._call_provider(call, attempt, admission, target)
        finally:
            await self._settle(reservation, admission, user, attempt)
        return result

    async def _call_provider(
        self, call: Call, attempt: Attempt, admission: Admission, target: Target
    ) -> dict[str, Any] | None:
        adapter = self._adapters[target.api]
        if attempt.stream:
            await relay_stream(
                call, attempt, adapter.stream(self._http, target, call.body)
            )
            return None
        completion = await adapter.complete(self._http, target, call.body)
        attempt.status = "ok"
        if isinstance(completion.get("usage"), dict):
            attempt.usage = completion["usage"]
            attempt.usage_source = "provider"
        else:
            attempt.usage = estimated_usage(attempt.estimated_prompt, completion)
        return completion

    async def _settle(
        self, reservation: str, admission: Admission, user: str | None, attempt: Attempt
    ) -> None:
        usage = attempt.usage or {}
        used = int(usage.get("prompt_tokens", 0)) + int(
            usage.get("completion_tokens", 0)
        )
        await self._quota.settle(
            Settlement(
                reservation=reservation,
                model=admission.model["rid"],
                project=admission.project,
                user=user,
                tokens=used,
                ok=attempt.status == "ok" or used > 0,
            )
        )
