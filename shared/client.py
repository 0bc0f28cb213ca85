"""The gateway's async client: every subject of the contract as a method.

    async with await ByomClient.connect(url, token) as client:
        reply = await client.chat(
            {"model": "m", "messages": [...]}, application="workshop", project="p"
        )

Errors come back as the ``shared.errors`` classes, so callers catch
``RateLimited`` rather than parse envelopes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, Self

import nats
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from shared import telemetry
from shared.bus import redacted, servers_and_credentials
from shared.errors import ByomError, Unavailable, error_from_body
from shared.subjects import Subjects
from shared.transport import (
    APPLICATION_HEADER,
    AUTHORIZATION,
    ERROR_HEADER,
    PROJECT_HEADER,
    REQUEST_ID_HEADER,
    STREAM_HEADER,
)

DEFAULT_TIMEOUT_S = 10.0
CHAT_TIMEOUT_S = 120.0


class ByomClient:
    """Talk to a gateway over NATS with one bearer token."""

    def __init__(
        self,
        nc: NatsClient,
        token: str | None,
        *,
        subjects: Subjects | None = None,
        owns_connection: bool = False,
    ) -> None:
        self.nc = nc
        self.token = token
        self.subjects = subjects or Subjects()
        self._owns_connection = owns_connection

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str | None,
        *,
        subjects: Subjects | None = None,
        inbox_prefix: str | None = None,
    ) -> ByomClient:
        """Connect to ``url`` (``NATS_URL``: one or more servers, comma-separated,
        with ``user:password@`` sent to each).

        ``inbox_prefix`` is the credential's own inbox subjects, for a NATS
        user allowed only those (deploy/nats/accounts.conf: ``_INBOX.<user>``).
        """
        servers, user, password = servers_and_credentials(url)
        try:
            nc = await nats.connect(
                servers,
                user=user,
                password=password,
                connect_timeout=2,
                max_reconnect_attempts=3,
                reconnect_time_wait=0.5,
                inbox_prefix=inbox_prefix or "_INBOX",
            )
        except (OSError, TimeoutError, nats.errors.NoServersError) as exc:
            raise Unavailable(
                f"cannot reach the gateway's NATS at {redacted(url)}: {exc}"
            ) from exc
        return cls(nc, token, subjects=subjects, owns_connection=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_connection and not self.nc.is_closed:
            await self.nc.close()

    def headers(self, **extra: str | None) -> dict[str, str]:
        headers = {key: value for key, value in extra.items() if value is not None}
        if self.token:
            headers[AUTHORIZATION] = f"Bearer {self.token}"
        return dict(telemetry.inject(headers))

    async def request(
        self,
        subject: str,
        body: dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send a request and return its result, raising its error."""
        try:
            reply = await self.nc.request(
                subject,
                orjson.dumps(body),
                timeout=timeout,
                headers=headers or self.headers(),
            )
        except NoRespondersError as exc:
            raise Unavailable(
                f"no service answers {subject}: is the gateway up?"
            ) from exc
        except NatsTimeout as exc:
            raise Unavailable(f"{subject} did not answer within {timeout} s") from exc
        return _result(reply)

    async def registry(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call ``byom.registry.<operation>``."""
        return await self.request(self.subjects.registry(operation), body)

    async def chat(
        self,
        request: dict[str, Any],
        *,
        application: str,
        project: str,
        request_id: str | None = None,
        timeout: float = CHAT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send a non-streaming chat request and return the completion."""
        headers = self._chat_headers(application, project, request_id)
        return await self.request(
            self.subjects.inference_chat, request, headers=headers, timeout=timeout
        )

    async def chat_stream(
        self,
        request: dict[str, Any],
        *,
        application: str,
        project: str,
        request_id: str | None = None,
        timeout: float = CHAT_TIMEOUT_S,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the chunks of a streaming chat; the last one carries usage.

        Closing the generator (``contextlib.aclosing``, or dropping it after
        leaving the loop) unsubscribes the inbox; the router's next liveness
        probe then finds nobody and cancels the provider call.
        """
        inbox = self.nc.new_inbox()
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        subscription = await self.nc.subscribe(inbox, cb=queue.put)
        try:
            await self.nc.publish(
                self.subjects.inference_chat,
                orjson.dumps({**request, "stream": True}),
                reply=inbox,
                headers=self._chat_headers(application, project, request_id),
            )
            async for chunk in _chunks(self.nc, queue, timeout):
                yield chunk
        finally:
            await subscription.unsubscribe()

    async def usage(self, query: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.request(self.subjects.metering_usage, query or {})

    async def status(self, wait_s: float = 0.5) -> list[dict[str, Any]]:
        """Gather every replica's status answer for ``wait_s`` seconds."""
        inbox = self.nc.new_inbox()
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        subscription = await self.nc.subscribe(inbox, cb=queue.put)
        await self.nc.publish(
            self.subjects.status, b"{}", reply=inbox, headers=self.headers()
        )
        await asyncio.sleep(wait_s)
        await subscription.unsubscribe()
        replies = []
        while not queue.empty():
            replies.append(_result(queue.get_nowait()))
        return replies

    def _chat_headers(
        self, application: str, project: str, request_id: str | None
    ) -> dict[str, str]:
        return self.headers(
            **{
                APPLICATION_HEADER: application,
                PROJECT_HEADER: project,
                REQUEST_ID_HEADER: request_id or uuid.uuid4().hex,
            }
        )


def _result(reply: Msg) -> dict[str, Any]:
    body = orjson.loads(reply.data) if reply.data else {}
    if reply.headers and ERROR_HEADER in reply.headers:
        raise error_from_body(body)
    return dict(body)


async def _chunks(
    nc: NatsClient, queue: asyncio.Queue[Msg], timeout: float
) -> AsyncIterator[dict[str, Any]]:
    while True:
        try:
            msg = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError as exc:
            raise Unavailable(f"the stream sent nothing for {timeout} s") from exc
        headers = msg.headers or {}
        if headers.get(STREAM_HEADER) == "ping":
            await nc.publish(msg.reply, b"")
            continue
        chunk = _result(msg)
        yield chunk
        if headers.get(STREAM_HEADER) == "end":
            return


__all__ = ["ByomClient", "ByomError"]
