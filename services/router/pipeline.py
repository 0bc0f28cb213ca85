"""The inference path: checks, quota, provider call, settlement, usage event.

Every request that passes authentication produces exactly one usage event,
whatever its outcome: ``chat`` opens an ``Attempt``, each step records on
it, and the event is published once, in ``chat``'s ``finally``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from services.router.attempt import Attempt
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
from shared.errors import ByomError
from shared.logs import bind_context
from shared.registry_view import RegistryView
from shared.transport import (
    APPLICATION_HEADER,
    PROJECT_HEADER,
    REQUEST_ID_HEADER,
    Call,
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
        attempt = open_attempt(call)
        try:
            return await self._run(call, attempt)
        except ByomError as exc:
            attempt.fail(exc)
            if not attempt.stream:
                raise
            await send_stream_error(call, exc)
            call.outcome = exc.code
            bind_context(reason=exc.message)
            return None
        finally:
            # Written before the reply, so an answered call is never unmetered.
            await self._usage.publish(attempt.event(), dict(telemetry.inject({})))

    async def _run(self, call: Call, attempt: Attempt) -> dict[str, Any] | None:
        admission = admit(
            self._view,
            caller=call.caller,
            app_name=attempt.application,
            project=attempt.project,
            request=call.body,
            needs=capabilities_used(call.body),
        )
        attempt.provider = admission.model["provider"]
        attempt.estimated_prompt = estimate_prompt_tokens(call.body)
        target = self._targets.target(admission)

        quota = self._quota_request(call, attempt, admission)
        reservation = await self._quota.acquire(quota)
        try:
            return await self._call_provider(call, attempt, target)
        finally:
            await self._settle(reservation, quota, attempt)

    def _quota_request(
        self, call: Call, attempt: Attempt, admission: Admission
    ) -> QuotaRequest:
        allowance = output_allowance(admission.model, call.body)
        return QuotaRequest(
            request_id=attempt.request_id,
            model=admission.model["rid"],
            project=admission.project,
            user=call.caller.user if admission.app.user_attributed else None,
            tokens=attempt.estimated_prompt + allowance,
        )

    async def _call_provider(
        self, call: Call, attempt: Attempt, target: Target
    ) -> dict[str, Any] | None:
        adapter = self._adapters[target.api]
        if attempt.stream:
            chunks = adapter.stream(self._http, target, call.body)
            await relay_stream(call, attempt, chunks)
            return None

        completion = await adapter.complete(self._http, target, call.body)
        usage = completion.get("usage")
        if isinstance(usage, dict):
            attempt.record_usage(usage, reported=True)
        else:
            estimate = estimated_usage(attempt.estimated_prompt, completion)
            attempt.record_usage(estimate, reported=False)
        attempt.succeed()
        return completion

    async def _settle(
        self, reservation: str, quota: QuotaRequest, attempt: Attempt
    ) -> None:
        # Usage is recorded only when the provider produced something (even a
        # stream cut short); a call without it is refunded.
        await self._quota.settle(
            Settlement(
                reservation=reservation,
                model=quota.model,
                project=quota.project,
                user=quota.user,
                tokens=attempt.used_tokens,
                ok=attempt.usage is not None,
            )
        )


def open_attempt(call: Call) -> Attempt:
    """Start the record of a request and bind its log context."""
    request_id = call.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    model = call.body.get("model")
    attempt = Attempt(
        request_id=request_id,
        model=model if isinstance(model, str) and model else "_",
        user=call.caller.user,
        application=call.headers.get(APPLICATION_HEADER),
        project=call.headers.get(PROJECT_HEADER),
        stream=call.body.get("stream") is True,
    )
    bind_context(request_id=request_id, model=attempt.model, project=attempt.project)
    return attempt
