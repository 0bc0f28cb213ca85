"""The router's side of the limiter: acquire before the call, settle after.

The router never counts locally. When no limiter answers in time it refuses
the request with ``unavailable`` (fail closed).
"""

from __future__ import annotations

import orjson
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from opentelemetry import trace

from shared import telemetry
from shared.contracts.limiter import QuotaRequest, Settlement
from shared.errors import RateLimited, Unavailable, error_from_body
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.subjects import Subjects
from shared.transport import ERROR_HEADER

_log = get_logger(__name__)


class QuotaClient:
    """Reserve quota for a call and settle it with the real usage."""

    def __init__(
        self,
        nc: NatsClient,
        subjects: Subjects,
        timeout_s: float,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._timeout_s = timeout_s
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
        headers = telemetry.inject({})
        try:
            reply = await self._nc.request(
                self._subjects.limiter_acquire,
                orjson.dumps(request.model_dump()),
                timeout=self._timeout_s,
                headers=dict(headers),
            )
        except (NoRespondersError, NatsTimeout, NatsError) as exc:
            raise Unavailable(
                "the rate limiter did not answer: the request was not sent "
                "(limits are never skipped); try again shortly"
            ) from exc
        body = orjson.loads(reply.data)
        if reply.headers and ERROR_HEADER in reply.headers:
            raise error_from_body(body)
        return str(body["reservation"])

    async def settle(self, settlement: Settlement) -> None:
        """Tell the limiter what the call really used (fire and forget)."""
        try:
            await self._nc.publish(
                self._subjects.limiter_settle,
                orjson.dumps(settlement.model_dump()),
                headers=dict(telemetry.inject({})),
            )
        except NatsError as exc:
            # The reservation stays as estimated and leaves with its window.
            _log.warning(
                "settle_failed", reservation=settlement.reservation, error=str(exc)
            )
