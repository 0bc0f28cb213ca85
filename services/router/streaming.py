"""Relaying a provider's stream to the caller as ordered NATS messages.

Each ``chat.completion.chunk`` goes to the request's reply subject as its
own message. The last one carries ``Byom-Stream: end`` and is always a
usage chunk: the provider's counts, or the gateway's estimate when the
provider sent none. While relaying, the router asks the caller's inbox
whether anyone still listens (``Byom-Stream: ping``, answered by the client
library); when nobody does, the provider call is cancelled and the usage
event records what was produced so far.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import orjson
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from services.router.estimates import completion_tokens_of, usage_of
from shared.errors import ByomError
from shared.transport import ERROR_HEADER, STREAM_HEADER, Call

if TYPE_CHECKING:
    from services.router.pipeline import Attempt

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.0
END = {STREAM_HEADER: "end"}


class ClientGone(Exception):
    """The caller stopped listening to its stream."""


async def relay_stream(
    call: Call, attempt: Attempt, chunks: AsyncIterator[dict[str, Any]]
) -> None:
    """Send every chunk, then the closing usage chunk; record what was used."""
    relay = _Relay(call, attempt)
    try:
        async with aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                await relay.forward(chunk)
                relay.check_listener()
    except ClientGone:
        attempt.status = "error"
        attempt.error_code = "client_gone"
        attempt.usage = relay.usage_so_far()
        return
    except ByomError:
        attempt.usage = attempt.usage or relay.usage_so_far()
        raise
    finally:
        relay.stop_probe()
    await relay.finish()


async def send_stream_error(call: Call, error: ByomError) -> None:
    """End a stream with an error message."""
    await call.send(orjson.dumps(error.to_body()), {**END, ERROR_HEADER: error.code})


class _Relay:
    def __init__(self, call: Call, attempt: Attempt) -> None:
        self._call = call
        self._attempt = attempt
        self._chars = 0
        self._last_chunk: dict[str, Any] = {}
        self._probe: asyncio.Task[bool] | None = None
        self._probed_at = time.monotonic()

    async def forward(self, chunk: dict[str, Any]) -> None:
        if self._attempt.ttft_ms is None:
            self._attempt.ttft_ms = round(
                (time.perf_counter() - self._attempt.started) * 1000, 3
            )
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._attempt.usage = usage
            self._attempt.usage_source = "provider"
            self._last_chunk = chunk
            if not chunk.get("choices"):
                return
            chunk = {key: value for key, value in chunk.items() if key != "usage"}
        self._count(chunk)
        self._last_chunk = chunk
        await self._call.send(orjson.dumps(chunk), {})

    async def finish(self) -> None:
        """Send the closing usage chunk with the end header."""
        if self._attempt.usage is None:
            self._attempt.usage = self.usage_so_far()
        closing = {
            "id": self._last_chunk.get("id", self._attempt.request_id),
            "object": "chat.completion.chunk",
            "created": self._last_chunk.get("created", int(time.time())),
            "model": self._attempt.model,
            "choices": [],
            "usage": self._attempt.usage,
        }
        await self._call.send(orjson.dumps(closing), END)
        self._attempt.status = "ok"

    def usage_so_far(self) -> dict[str, Any]:
        return usage_of(
            self._attempt.estimated_prompt, completion_tokens_of(self._chars)
        )

    def check_listener(self) -> None:
        """Raise ``ClientGone`` once a probe found nobody listening."""
        probe = self._probe
        if probe is not None and probe.done():
            self._probe = None
            if not probe.result():
                raise ClientGone
        if (
            self._probe is None
            and time.monotonic() - self._probed_at > PROBE_INTERVAL_S
        ):
            self._probed_at = time.monotonic()
            self._probe = asyncio.create_task(self._listening())

    def stop_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()

    async def _listening(self) -> bool:
        try:
            await self._call.connection.request(
                self._call.reply,
                b"",
                timeout=PROBE_TIMEOUT_S,
                headers={STREAM_HEADER: "ping"},
            )
        except NoRespondersError:
            return False
        except NatsTimeout:
            # A slow client is still a client; only an empty inbox is gone.
            return True
        return True

    def _count(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            self._chars += len(delta.get("content") or "")
            self._chars += len(delta.get("reasoning_content") or "")
            for call in delta.get("tool_calls") or []:
                self._chars += len((call.get("function") or {}).get("arguments") or "")
