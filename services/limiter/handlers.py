"""The limiter's endpoints for one partition: acquire and settle.

``byom.limiter.acquire.<p>`` answers a ``QuotaRequest`` with a reservation
(``"<p>.<id>"``) once it is journaled, or with the refusal the contract
names; ``byom.limiter.settle.<p>`` takes a ``Settlement`` and answers
nothing. A partition that has been fenced out answers nothing either: the
router retries and reaches the new owner.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from services.limiter.limits import Limits, RateLimit, project_limits
from services.limiter.partition import Partition
from services.limiter.quota import Denial
from shared.contracts.limiter import QuotaRequest, Settlement
from shared.errors import ByomError, InvalidRequest, NotFound, RateLimited
from shared.metrics import Metrics
from shared.registry_view import RegistryView
from shared.subjects import limiter_partition, reservation_partition
from shared.transport import Call, Handler, invalid_from_validation

_Body = TypeVar("_Body", QuotaRequest, Settlement)

NEVER_RETRY_S = 60.0
"""What a refusal says to wait when a limit is 0: nothing fits until an
admin raises it, but the contract needs a number."""


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


class PartitionHandlers:
    """Serve one partition's subjects from its book and the registry view."""

    def __init__(self, partition: Partition, view: Callable[[], RegistryView]) -> None:
        self._partition = partition
        self._view = view

    async def acquire(self, call: Call) -> dict[str, Any] | None:
        request = _parse(QuotaRequest, call.body)
        self._check_partition(request.model)
        if request.tokens < 0:
            raise InvalidRequest(
                f"tokens: must be 0 or more (received {request.tokens})",
                field="tokens",
            )
        limits = limits_for(self._view(), request.model, request.project)
        outcome = await self._partition.acquire(request, limits)
        if isinstance(outcome, Denial):
            raise refusal(outcome, request.tokens, limits)
        if outcome is None:
            return None
        return {"reservation": outcome}

    async def settle(self, call: Call) -> None:
        settlement = _parse(Settlement, call.body)
        self._check_partition(settlement.model)
        reservation = settlement.reservation
        if reservation_partition(reservation) != self._partition.index:
            raise InvalidRequest(
                f"reservation: {reservation!r} was not granted by partition "
                f"{self._partition.index}",
                field="reservation",
            )
        _, _, number = reservation.partition(".")
        if not number.isdigit():
            raise InvalidRequest(
                f"reservation: expected '<partition>.<id>', got {reservation!r}",
                field="reservation",
            )
        self._partition.settle(int(number), settlement.tokens, settlement.ok)

    def _check_partition(self, model_id: str) -> None:
        expected = limiter_partition(model_id)
        if expected != self._partition.index:
            raise InvalidRequest(
                f"model: {model_id!r} belongs to limiter partition {expected}, "
                f"not {self._partition.index}: send it to that partition's subject",
                field="model",
            )


def _parse(model: type[_Body], body: dict[str, Any]) -> _Body:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from exc


def refusal(denial: Denial, tokens: int, limits: Limits) -> ByomError:
    """Turn a denial into the contract's error (docs/limits.md, Denials)."""
    if denial.retry_after_s is None and denial.limit == "tpm":
        smallest = min(
            level.tpm
            for level in (limits.enrollment, limits.project, limits.user)
            if level is not None and level.tpm is not None and level.tpm < tokens
        )
        return InvalidRequest(
            f"this call reserves {tokens} tokens (prompt estimate plus output "
            f"allowance), more than the {denial.scope} tpm allows in any minute "
            f"(the smallest tpm it exceeds is {smallest}): lower "
            "max_completion_tokens or shorten the prompt",
            field="max_completion_tokens",
        )
    if denial.retry_after_s is None:
        return RateLimited(
            f"the {denial.scope} {denial.limit} limit is 0: no call is admitted "
            "until an admin raises it",
            scope=denial.scope,
            limit=denial.limit,
            retry_after_s=NEVER_RETRY_S,
        )
    return RateLimited(
        f"the {denial.scope} {denial.limit} limit is reached: "
        f"retry in {denial.retry_after_s:.1f} s",
        scope=denial.scope,
        limit=denial.limit,
        retry_after_s=round(denial.retry_after_s, 3),
    )


def measured(handler: Handler, subject: str, metrics: Metrics) -> Handler:
    """Count a handler's outcomes and time it under ``subject``."""

    async def handle(call: Call) -> Any:
        started, outcome = time.perf_counter(), "ok"
        try:
            return await handler(call)
        except ByomError as exc:
            outcome = exc.code
            raise
        except Exception:
            outcome = "internal"
            raise
        finally:
            metrics.requests.labels(subject, outcome).inc()
            metrics.handling.labels(subject).observe(time.perf_counter() - started)

    return handle
