"""Relaying a provider's stream to the caller as ordered NATS messages.

Each ``chat.completion.chunk`` goes to the request's reply subject as its
own message. The last one carries ``Byom-Stream: end`` and is always a
usage chunk: the provider's counts, or the gateway's estimate when the
provider sent none. An error ends the stream instead, with the same header
and ``Byom-Error``.

While relaying, the router asks the caller's inbox every second whether
anyone still listens (``Byom-Stream: ping``, answered by the client
library). The probe runs beside the relay, so a caller that leaves is
noticed even while the provider is silent (a model thinking before its
first token); the provider call is then cancelled, which closes its
connection, and the usage event records what was produced so far.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from services.router.attempt import Attempt
from services.router.estimates import completion_tokens_of, usage_of
from shared.errors import ByomError
from shared.logs import bind_context
from shared.transport import ERROR_HEADER, STREAM_HEADER, Call

PROBE_INTERVAL_S = 1.0
"""How often the caller's inbox is probed; a probe also waits at most this
long for its answer, so a caller that leaves while a probe is in flight is
still noticed by the next one, about a second later."""
END = {STREAM_HEADER: "end"}
PING = {STREAM_HEADER: "ping"}


async def relay_stream(
    call: Call, attempt: Attempt, chunks: AsyncIterator[dict[str, Any]]
) -> None:
    """Send every chunk, then the closing usage chunk; record what was used."""
    relay = _Relay(call, attempt)
    forwarding = asyncio.create_task(relay.forward_all(chunks))
    listening = asyncio.create_task(_until_caller_leaves(call))
    try:
        await asyncio.wait({forwarding, listening}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _cancel(listening)
        await _cancel(forwarding)

    if forwarding.cancelled():
        bind_context(reason="the caller left mid-stream")
        attempt.client_gone(relay.usage_so_far())
        return
    failure = forwarding.exception()
    if failure is not None:
        if attempt.usage is None and relay.sent_any:
            attempt.record_usage(relay.usage_so_far(), reported=False)
        raise failure
    await relay.finish()


async def send_stream_error(call: Call, error: ByomError) -> None:
    """End a stream with an error message."""
    await call.send(orjson.dumps(error.to_body()), {**END, ERROR_HEADER: error.code})


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a task unless it is done, and wait until it has stopped."""
    if not task.done():
        task.cancel()
    await asyncio.wait({task})


async def _until_caller_leaves(call: Call) -> None:
    clock = asyncio.get_running_loop()
    due = clock.time() + PROBE_INTERVAL_S
    while True:
        await asyncio.sleep(max(0.0, due - clock.time()))
        # Due one interval after sending: an unanswered probe has already
        # waited that long, so the next one goes out at once.
        due = clock.time() + PROBE_INTERVAL_S
        if not await _caller_listens(call):
            return


async def _caller_listens(call: Call) -> bool:
    try:
        await call.connection.request(
            call.reply, b"", timeout=PROBE_INTERVAL_S, headers=PING
        )
    except NoRespondersError:
        return False
    except NatsTimeout:
        # A slow client is still a client; only an empty inbox is gone.
        return True
    return True


class _Relay:
    """Forward chunks, counting what was sent and holding back usage."""

    def __init__(self, call: Call, attempt: Attempt) -> None:
        self._call = call
        self._attempt = attempt
        self._chars = 0
        self._head: dict[str, Any] = {}
        self.sent_any = False

    async def forward_all(self, chunks: AsyncIterator[dict[str, Any]]) -> None:
        """Relay the provider's chunks until its stream ends."""
        async with aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                await self._forward(chunk)

    async def finish(self) -> None:
        """Send the closing usage chunk with the end header."""
        if self._attempt.usage is None:
            self._attempt.record_usage(self.usage_so_far(), reported=False)
        closing = {
            "id": self._head.get("id", self._attempt.request_id),
            "object": "chat.completion.chunk",
            "created": self._head.get("created", int(time.time())),
            "model": self._attempt.model,
            "choices": [],
            "usage": self._attempt.usage,
        }
        await self._call.send(orjson.dumps(closing), END)
        self._attempt.succeed()

    def usage_so_far(self) -> dict[str, Any]:
        """Estimate the usage of what has been relayed until now."""
        return usage_of(
            self._attempt.estimated_prompt, completion_tokens_of(self._chars)
        )

    async def _forward(self, chunk: dict[str, Any]) -> None:
        self._attempt.record_first_token()
        self._head = chunk
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            # Adapters send reported usage alone, last; it closes the stream.
            self._attempt.record_usage(usage, reported=True)
            if not chunk.get("choices"):
                return
            chunk = {key: value for key, value in chunk.items() if key != "usage"}
        self._count(chunk)
        await self._call.send(orjson.dumps(chunk), {})
        self.sent_any = True

    def _count(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            self._chars += len(delta.get("content") or "")
            self._chars += len(delta.get("reasoning_content") or "")
            for call in delta.get("tool_calls") or []:
                self._chars += len((call.get("function") or {}).get("arguments") or "")
