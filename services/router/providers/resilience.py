"""Call a provider over HTTP with timeouts, bounded retries and clean errors.

Connection errors, 429 and 5xx answers are retried with exponential backoff
and full jitter, or after the provider's ``Retry-After`` when it sends one,
for at most ``max_attempts`` tries within ``retry_budget_s``. A stream is
retried only until its response starts: once bytes flowed, a retry could
duplicate what the client has already seen. A read timeout is not retried:
the provider may still be generating, and a retry would double the cost.

Every failure leaves here as ``ProviderError`` (with the provider's status
and a short message from its error body, secrets redacted) or
``ProviderTimeout``; a connection failure is reported as status 502.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.errors import ByomError, ProviderError, ProviderTimeout

from .base import JSON

RequestFactory = Callable[[], httpx.Request]
MESSAGE_LIMIT = 300
CONNECTION_FAILED_STATUS = 502


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Timeouts and retry bounds of provider calls.

    ``timeout_s`` (``BYOM_PROVIDER_TIMEOUT_S``, default 60) bounds each wait
    for provider bytes: the first byte of an answer and every gap within a
    stream. ``connect_timeout_s`` (``BYOM_PROVIDER_CONNECT_TIMEOUT_S``, 10)
    bounds the TCP and TLS handshake. ``retry_budget_s``
    (``BYOM_PROVIDER_RETRY_BUDGET_S``, 30) bounds the time spent retrying;
    ``max_attempts`` (``BYOM_PROVIDER_MAX_ATTEMPTS``, 4) counts the first try.
    """

    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    retry_budget_s: float = 30.0
    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ProviderSettings:
        """Read the documented ``BYOM_PROVIDER_*`` variables."""
        defaults = cls()
        return cls(
            timeout_s=float(env.get("BYOM_PROVIDER_TIMEOUT_S", defaults.timeout_s)),
            connect_timeout_s=float(
                env.get("BYOM_PROVIDER_CONNECT_TIMEOUT_S", defaults.connect_timeout_s)
            ),
            retry_budget_s=float(
                env.get("BYOM_PROVIDER_RETRY_BUDGET_S", defaults.retry_budget_s)
            ),
            max_attempts=int(
                env.get("BYOM_PROVIDER_MAX_ATTEMPTS", defaults.max_attempts)
            ),
        )


class _RetryableError(Exception):
    """A failed attempt that another attempt may fix."""

    def __init__(self, error: ByomError, retry_after_s: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after_s = retry_after_s


class ProviderCaller:
    """Send provider requests under the settings' timeouts and retry policy."""

    def __init__(
        self,
        settings: ProviderSettings | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or ProviderSettings()
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self._timeout = httpx.Timeout(
            self.settings.timeout_s, connect=self.settings.connect_timeout_s
        )

    async def send(
        self, client: httpx.AsyncClient, build: RequestFactory, secrets: tuple[str, ...]
    ) -> JSON:
        """Return the JSON body of the provider's successful answer."""
        async with self.open_stream(client, build, secrets) as response:
            body = await response.aread()
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise ProviderError(
                "provider answered with a body that is not JSON",
                provider_status=response.status_code,
            ) from exc
        if not isinstance(parsed, dict):
            raise ProviderError(
                "provider answered with JSON that is not an object",
                provider_status=response.status_code,
            )
        return parsed

    @asynccontextmanager
    async def open_stream(
        self, client: httpx.AsyncClient, build: RequestFactory, secrets: tuple[str, ...]
    ) -> AsyncIterator[httpx.Response]:
        """Open a successful response; close it however the caller leaves."""
        response = await self._open_with_retries(client, build, secrets)
        try:
            yield response
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(
                "provider stopped sending within the timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(
                f"provider connection failed mid-answer ({type(exc).__name__})",
                provider_status=CONNECTION_FAILED_STATUS,
            ) from exc
        finally:
            await response.aclose()

    async def _open_with_retries(
        self, client: httpx.AsyncClient, build: RequestFactory, secrets: tuple[str, ...]
    ) -> httpx.Response:
        deadline = self._clock() + self.settings.retry_budget_s
        attempt = 1
        while True:
            try:
                return await self._attempt(client, build, secrets)
            except _RetryableError as failed:
                delay = self._delay(attempt, failed.retry_after_s)
                out_of_budget = self._clock() + delay > deadline
                if attempt >= self.settings.max_attempts or out_of_budget:
                    raise failed.error from failed
            await self._sleep(delay)
            attempt += 1

    async def _attempt(
        self, client: httpx.AsyncClient, build: RequestFactory, secrets: tuple[str, ...]
    ) -> httpx.Response:
        request = build()
        request.extensions["timeout"] = self._timeout.as_dict()
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectTimeout as exc:
            timeout = ProviderTimeout("provider did not accept the connection in time")
            raise _RetryableError(timeout) from exc
        except httpx.TimeoutException as exc:
            raise ProviderTimeout("provider did not answer within the timeout") from exc
        except httpx.TransportError as exc:
            error = ProviderError(
                f"could not reach the provider ({type(exc).__name__})",
                provider_status=CONNECTION_FAILED_STATUS,
            )
            raise _RetryableError(error) from exc
        if response.is_success:
            return response
        raise await _failure(response, secrets)

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return retry_after_s
        ceiling = self.settings.backoff_base_s * 2.0 ** (attempt - 1)
        return self._jitter() * min(self.settings.backoff_cap_s, ceiling)


async def _failure(
    response: httpx.Response, secrets: tuple[str, ...]
) -> ProviderError | _RetryableError:
    try:
        await response.aread()
    except httpx.HTTPError:
        pass  # The status alone is worth reporting; the body is a bonus.
    finally:
        await response.aclose()
    status = response.status_code
    wait = retry_after_s(response.headers)
    error = ProviderError(
        f"provider answered {status}: {error_message(response, secrets)}",
        provider_status=status,
        retry_after_s=wait,
    )
    if status == 429 or status >= 500:
        return _RetryableError(error, wait)
    return error


def retry_after_s(
    headers: Mapping[str, str], now: datetime | None = None
) -> float | None:
    """Read ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass  # Fall back to the standard header.
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass  # Not seconds: try the HTTP-date form.
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    waited: float = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, waited)


def error_message(response: httpx.Response, secrets: tuple[str, ...]) -> str:
    """Extract a short, secret-free message from a provider error body."""
    try:
        text = _message_from_json(response.json())
    except (ValueError, httpx.ResponseNotRead):
        text = ""
    text = text or response.reason_phrase or "no error message"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text[:MESSAGE_LIMIT]


def _message_from_json(body: Any) -> str:
    if isinstance(body, list) and body:
        body = body[0]  # Gemini's streaming endpoints wrap errors in a list.
    if not isinstance(body, dict):
        return ""
    error = body.get("error", body)
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        message = error.get("message") or error.get("Message")
        return str(message) if message else ""
    return ""
