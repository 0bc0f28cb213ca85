"""The router's side of the limiter: acquire before the call, settle after.

The router never counts locally. Each model's windows live in one limiter
partition, found from the model id alone (``limiter_partition``); while a
partition changes owner nobody answers it, so the router retries with
backoff for a short budget, then refuses with ``unavailable`` (fail closed).
A retry reuses the request id, which the limiter grants at most once.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from opentelemetry import trace

from shared import telemetry
from shared.contracts.limiter import QuotaRequest, Settlement
from shared.errors import RateLimited, Unavailable, error_from_body
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.subjects import Subjects, limiter_partition, reservation_partition
from shared.transport import ERROR_HEADER

_log = get_logger(__name__)

RETRY_BUDGET_S = 3.0
"""How long an acquire keeps retrying a partition nobody answers: a lapsed
limiter lease (2 s), the next ownership tick and a takeover fit in it."""
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 0.4


class QuotaClient:
    """Reserve quota for a call and settle it with the real usage."""

    def __init__(
        self,
        nc: NatsClient,
        subjects: Subjects,
        timeout_s: float,
        *,
        metrics: Metrics | None = None,
        budget_s: float = RETRY_BUDGET_S,
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._timeout_s = timeout_s
        self._budget_s = budget_s
        self._metrics = metrics
        self._tracer = telemetry.tracer("byom.router")

    async def acquire(self, request: QuotaRequest) -> str:
        """Return a reservation id, or raise ``RateLimited`` / ``Unavailable``."""
        with self._tracer.start_as_current_span(
            "limiter acquire",
            kind=trace.SpanKind.CLIENT,
            attributes={"byom.project": request.project, "byom.tokens": request.tokens},
        ) as span:
            try:
                return await self._acquire(request)
            except RateLimited as exc:
                span.set_attribute("byom.rate_limited.scope", str(exc.extra["scope"]))
                if self._metrics is not None:
                    self._metrics.rate_limited.labels(
                        exc.extra["scope"], exc.extra["limit"]
                    ).inc()
                raise

    async def _acquire(self, request: QuotaRequest) -> str:
        reply = await self._request_with_retries(
            self._subjects.limiter_acquire_at(limiter_partition(request.model)),
            orjson.dumps(request.model_dump()),
        )
        body = orjson.loads(reply.data)
        if reply.headers and ERROR_HEADER in reply.headers:
            raise error_from_body(body)
        return str(body["reservation"])

    async def _request_with_retries(self, subject: str, payload: bytes) -> Msg:
        deadline = time.monotonic() + self._budget_s
        backoff = FIRST_BACKOFF_S
        while True:
            timeout = min(self._timeout_s, max(deadline - time.monotonic(), 0.01))
            try:
                return await self._nc.request(
                    subject,
                    payload,
                    timeout=timeout,
                    headers=dict(telemetry.inject({})),
                )
            except (NoRespondersError, NatsTimeout) as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _unavailable() from exc
                _log.debug("limiter_retry", subject=subject, error=type(exc).__name__)
                # The last attempt is made at the end of the budget, not
                # before it: a takeover may finish just then.
                await asyncio.sleep(min(backoff, remaining))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except NatsError as exc:
                raise _unavailable() from exc

    async def settle(self, settlement: Settlement) -> None:
        """Tell the limiter what the call really used (fire and forget)."""
        try:
            await self._nc.publish(
                self._settle_subject(settlement),
                orjson.dumps(settlement.model_dump()),
                headers=dict(telemetry.inject({})),
            )
        except NatsError as exc:
            # The reservation stays as estimated and leaves with its window.
            _log.warning(
                "settle_failed", reservation=settlement.reservation, error=str(exc)
            )

    def _settle_subject(self, settlement: Settlement) -> str:
        partition = reservation_partition(settlement.reservation)
        if partition is None:
            partition = limiter_partition(settlement.model)
        return self._subjects.limiter_settle_at(partition)


def _unavailable() -> Unavailable:
    return Unavailable(
        "the rate limiter did not answer: the request was not sent "
        "(limits are never skipped); try again shortly"
    )
