"""Assemble the limiter: registry view for limits, the quota book, endpoints."""

from __future__ import annotations

import time
from typing import Any

from services.limiter.limits import Limits, RateLimit, project_limits
from services.limiter.quota import Denial, QuotaBook
from shared.contracts.limiter import QuotaRequest, Settlement
from shared.errors import NotFound, RateLimited
from shared.logs import get_logger
from shared.registry_view import RegistryFollower, RegistryView
from shared.service import Service
from shared.settings import Settings
from shared.transport import Call

_log = get_logger(__name__)


def limits_for(view: RegistryView, model_rid: str, project: str) -> Limits:
    """Resolve the limits of the three levels for a model and project."""
    model = view.models.get(model_rid)
    if model is None:
        raise NotFound(f"no registered model with rid {model_rid!r}")
    enrollment = RateLimit(**model["limits"]["enrollment"])
    overrides = view.project_limits.get((model_rid, project), {})
    project_level = project_limits(
        enrollment,
        percent=overrides.get("percent"),
        rpm=overrides.get("rpm"),
        tpm=overrides.get("tpm"),
    )
    return Limits(enrollment, project_level, RateLimit(**model["limits"]["user"]))


class Limiter:
    """Answer quota requests from the router and apply its settlements."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self.book = QuotaBook()
        self.follower: RegistryFollower | None = None

    async def start(self) -> None:
        self.follower = RegistryFollower(self._service.js, self._service.subjects)
        await self.follower.start()

    async def stop(self) -> None:
        if self.follower is not None:
            await self.follower.stop()

    def registry_version(self) -> int:
        return self.follower.view.version if self.follower else 0

    async def acquire(self, call: Call) -> dict[str, Any]:
        if self.follower is None:
            raise RuntimeError("limiter is not started")
        request = QuotaRequest.model_validate(call.body)
        limits = limits_for(self.follower.view, request.model, request.project)
        outcome = self.book.acquire(
            time.time(),
            request.model,
            request.project,
            request.user,
            tokens=request.tokens,
            limits=limits,
        )
        if isinstance(outcome, Denial):
            raise _rate_limited(outcome)
        return {"reservation": str(outcome.reservation_id)}

    async def settle(self, call: Call) -> None:
        settlement = Settlement.model_validate(call.body)
        reservation = int(settlement.reservation)
        now = time.time()
        if settlement.ok:
            self.book.settle(now, reservation, settlement.tokens)
        else:
            self.book.refund(now, reservation)


def _rate_limited(denial: Denial) -> RateLimited:
    if denial.retry_after_s is None:
        return RateLimited(
            f"this call alone needs more than the {denial.scope} {denial.limit} "
            "limit allows: lower max_completion_tokens or the prompt",
            scope=denial.scope,
            limit=denial.limit,
            retry_after_s=60.0,
        )
    return RateLimited(
        f"the {denial.scope} {denial.limit} limit is reached: "
        f"retry in {denial.retry_after_s:.1f} s",
        scope=denial.scope,
        limit=denial.limit,
        retry_after_s=round(denial.retry_after_s, 3),
    )


def build(settings: Settings) -> Service:
    service = Service("limiter", settings)
    limiter = Limiter(service)
    service.components.append(limiter)
    service.registry_version = limiter.registry_version
    # The router is the only caller; its token is not forwarded, and the
    # subjects are closed to clients by NATS permissions (deploy/).
    service.serve(
        service.subjects.limiter_acquire,
        limiter.acquire,
        authenticate=False,
        quiet=True,
    )
    service.serve(
        service.subjects.limiter_settle, limiter.settle, authenticate=False, quiet=True
    )
    return service
