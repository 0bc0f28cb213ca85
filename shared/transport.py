"""Request/reply endpoints on NATS: decoding, identity, errors, tracing, logs.

A service writes each endpoint as ``async def handle(call: Call) -> result``
and never touches the wire. ``Endpoint`` wraps it: it parses the JSON body,
verifies the caller's token when the endpoint wants a caller, binds the log
context, opens a span in the caller's trace, and answers with the result or
with the contract's error envelope and ``Byom-Error`` header.

Endpoints are served on a plain nats-py connection: on the hot subjects the
per-message cost of a framework was most of the gateway's CPU budget
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace
from pydantic import BaseModel, ValidationError

from shared import telemetry
from shared.errors import ByomError, InvalidRequest, Unauthenticated
from shared.identity import Principal, TokenVerifier
from shared.logs import bind_context, clear_context, get_logger
from shared.metrics import Metrics

AUTHORIZATION = "Authorization"
ERROR_HEADER = "Byom-Error"
STREAM_HEADER = "Byom-Stream"
APPLICATION_HEADER = "Byom-Application"
PROJECT_HEADER = "Byom-Project"
REQUEST_ID_HEADER = "Byom-Request-Id"

_log = get_logger(__name__)


@dataclass(slots=True)
class Call:
    """One incoming request, decoded, with the verified caller when needed."""

    subject: str
    headers: Mapping[str, str]
    body: dict[str, Any]
    principal: Principal | None
    reply: str
    connection: NatsClient
    log_fields: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"
    """What the log line, span and metrics report for a handler that answers
    on its own (a stream) and returns nothing: the error code it sent."""

    @property
    def caller(self) -> Principal:
        """The verified caller; endpoints that authenticate always have one."""
        if self.principal is None:
            raise Unauthenticated("this subject needs a bearer token")
        return self.principal

    async def send(self, payload: bytes, headers: dict[str, str]) -> None:
        """Publish one more message to the caller's reply subject (streams)."""
        await self.connection.publish(self.reply, payload, headers=headers)


Handler = Callable[[Call], Awaitable[Any]]


def dumps(value: Any) -> bytes:
    """Serialise a reply body; pydantic models drop unset optional fields."""
    if isinstance(value, BaseModel):
        return orjson.dumps(value.model_dump(mode="json", exclude_none=True))
    return orjson.dumps(value)


def error_message(exc: ByomError) -> tuple[bytes, dict[str, str]]:
    """Encode an error as the contract's envelope and header."""
    return orjson.dumps(exc.to_body()), {ERROR_HEADER: exc.code}


def parse_body(data: bytes) -> dict[str, Any]:
    """Decode a request body, which must be a JSON object."""
    if not data:
        return {}
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}", field="") from exc
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"body must be a JSON object, got {type(body).__name__}", field=""
        )
    return body


def invalid_from_validation(exc: ValidationError) -> InvalidRequest:
    """Name the first failing field of a pydantic error, as a dotted path."""
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first["loc"])
    received = first.get("input")
    shown = "" if isinstance(received, dict | list) else f" (received {received!r})"
    return InvalidRequest(f"{path or 'body'}: {first['msg']}{shown}", field=path)


class Endpoint:
    """Serve one subject with a handler, in a queue group, concurrently."""

    def __init__(
        self,
        subject: str,
        handler: Handler,
        *,
        queue: str | None,
        verifier: TokenVerifier | None,
        span_name: str,
        max_in_flight: int = 256,
        quiet: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.subject = subject
        self._handler = handler
        self._queue = queue or ""
        self._verifier = verifier
        self._span_name = span_name
        self._slots = asyncio.Semaphore(max_in_flight)
        self._quiet = quiet
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None
        self._tracer = telemetry.tracer("byom")
        self._metrics = metrics

    async def start(self, connection: NatsClient) -> None:
        self._connection = connection
        self._subscription = await connection.subscribe(
            self.subject, queue=self._queue, cb=self._on_message
        )

    async def stop(self) -> None:
        """Stop taking messages and let those in flight finish."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    async def _on_message(self, msg: Msg) -> None:
        # nats-py runs callbacks one at a time; a task per message lets a
        # slow provider call overlap with the next request.
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle(self, msg: Msg) -> None:
        headers = msg.headers or {}
        started = time.perf_counter()
        clear_context()
        parent = telemetry.extract(headers)
        with self._tracer.start_as_current_span(
            self._span_name, context=parent, kind=trace.SpanKind.SERVER
        ) as span:
            span.set_attribute("messaging.destination.name", msg.subject)
            payload, reply_headers, outcome = await self._run(msg, headers)
            span.set_attribute("byom.outcome", outcome)
            if outcome != "ok":
                span.set_status(trace.StatusCode.ERROR, outcome)
        if msg.reply and payload is not None:
            await self._connection.publish(msg.reply, payload, headers=reply_headers)
        self._measure(outcome, started)
        self._log(outcome, started)

    def _measure(self, outcome: str, started: float) -> None:
        if self._metrics is not None:
            self._metrics.requests.labels(self.subject, outcome).inc()
            self._metrics.handling.labels(self.subject).observe(
                time.perf_counter() - started
            )

    async def _run(
        self, msg: Msg, headers: Mapping[str, str]
    ) -> tuple[bytes | None, dict[str, str] | None, str]:
        try:
            call = self._decode(msg, headers)
            result = await self._handler(call)
        except ByomError as exc:
            payload, error_headers = error_message(exc)
            bind_context(reason=exc.message)
            return payload, error_headers, exc.code
        except Exception:
            _log.exception("handler_failed", subject=msg.subject)
            failure = ByomError("the gateway failed to handle this request")
            return (
                orjson.dumps(failure.to_body()),
                {ERROR_HEADER: "internal"},
                "internal",
            )
        if result is None:
            return None, None, call.outcome
        if isinstance(result, bytes):
            return result, None, "ok"
        return dumps(result), None, "ok"

    def _decode(self, msg: Msg, headers: Mapping[str, str]) -> Call:
        principal = None
        if self._verifier is not None:
            principal = self._verifier.verify_header(headers.get(AUTHORIZATION))
            bind_context(user=principal.user)
        return Call(
            subject=msg.subject,
            headers=headers,
            body=parse_body(msg.data),
            principal=principal,
            reply=msg.reply,
            connection=self._connection,
        )

    def _log(self, outcome: str, started: float) -> None:
        if self._quiet and outcome == "ok":
            return
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        _log.info("handled", subject=self.subject, outcome=outcome, ms=elapsed_ms)
        clear_context()
