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

from shared import telemetry
from shared.contracts.limiter import QuotaRequest, Settlement
from shared.errors import Unavailable, error_from_body
from shared.logs import get_logger
from shared.subjects import Subjects
from shared.transport import ERROR_HEADER

_log = get_logger(__name__)


class QuotaClient:
    """Reserve quota for a call and settle it with the real usage."""

    def __init__(self, nc: NatsClient, subjects: Subjects, timeout_s: float) -> None:
        self._nc = nc
        self._subjects = subjects
        self._timeout_s = timeout_s

    async def acquire(self, request: QuotaRequest) -> str:
        """Return a reservation id, or raise ``RateLimited`` / ``Unavailable``."""
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
