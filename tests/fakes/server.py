"""A tiny asyncio HTTP/1.1 server that the strict provider fakes build on.

Each fake validates every request the way its provider would, records it,
and answers with the next scripted ``Reply`` (or its default answer). Tests
use it as an async context manager; scripts run it with ``serve_forever``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

HANG_LIMIT_S = 120.0


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_target: str = ""

    @property
    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Reply:
    """A scripted answer: a whole body, a chunked stream, or a hang."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] | None = None
    chunk_delay_s: float = 0.0
    hang: bool = False

    @classmethod
    def of_json(
        cls, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Reply:
        """Answer with a JSON body."""
        return cls(
            status,
            json.dumps(body).encode(),
            {"content-type": "application/json", **(headers or {})},
        )

    @classmethod
    def of_stream(
        cls, chunks: list[bytes], content_type: str, delay_s: float = 0.0
    ) -> Reply:
        """Answer with a chunked body, one write per chunk."""
        return cls(200, b"", {"content-type": content_type}, chunks, delay_s)

    @classmethod
    def hanging(cls) -> Reply:
        """Never answer; wait for the client to give up."""
        return cls(hang=True)


class FakeServer:
    """Serve scripted replies on 127.0.0.1 and record what was asked."""

    def __init__(self, port: int = 0) -> None:
        self.requested_port = port
        self.replies: deque[Reply] = deque()
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self._disconnected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """Return the bound port."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        """Return ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def queue(self, *replies: Reply) -> None:
        """Script the next answers, in order."""
        self.replies.extend(replies)

    def validate(self, request: Recorded) -> Reply | None:
        """Return an error reply when the provider would reject the request."""
        return None

    def default_reply(self, request: Recorded) -> Reply:
        """Answer when nothing is scripted."""
        return Reply.of_json({"ok": True})

    async def wait_disconnect(self, timeout_s: float = 5.0) -> None:
        """Wait until a client closed a connection mid-answer."""
        await asyncio.wait_for(self._disconnected.wait(), timeout_s)

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(
            self._on_connection, "127.0.0.1", self.requested_port
        )

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while (request := await _read_request(reader)) is not None:
                self.requests.append(request)
                reply = self.validate(request) or self._next(request)
                if not await self._write(reply, reader, writer):
                    break
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass  # The client went away; nothing left to answer.
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    def _next(self, request: Recorded) -> Reply:
        return self.replies.popleft() if self.replies else self.default_reply(request)

    async def _write(
        self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        if reply.hang:
            await self._wait_client_gone(reader)
            return False
        if reply.chunks is None:
            writer.write(_head(reply, {"content-length": str(len(reply.body))}))
            writer.write(reply.body)
            await writer.drain()
            return True
        return await self._write_chunks(reply, reader, writer)

    async def _write_chunks(
        self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        # Streams close the connection after them, so the pending EOF read
        # below can never swallow the first byte of a next request.
        extra = {"transfer-encoding": "chunked", "connection": "close"}
        writer.write(_head(reply, extra))
        gone = asyncio.ensure_future(reader.read(1))
        try:
            for chunk in reply.chunks or []:
                await asyncio.wait({gone}, timeout=reply.chunk_delay_s)
                if gone.done():
                    self._record_disconnect()
                    return False
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            self._record_disconnect()
        finally:
            gone.cancel()
        return False

    async def _wait_client_gone(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(), HANG_LIMIT_S)
        self._record_disconnect()

    def _record_disconnect(self) -> None:
        self.disconnects += 1
        self._disconnected.set()


async def _read_request(reader: asyncio.StreamReader) -> Recorded | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    url = urlsplit(target)
    query = dict(parse_qsl(url.query))
    return Recorded(method, url.path, query, headers, body, target)


def _head(reply: Reply, extra: dict[str, str]) -> bytes:
    reason = HTTPStatus(reply.status).phrase
    lines = [f"HTTP/1.1 {reply.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in {**reply.headers, **extra}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def serve_forever(fake: FakeServer, description: str) -> None:
    """Run a fake from the command line: ``--port N`` (0 picks one)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0)
    fake.requested_port = parser.parse_args().port

    async def main() -> None:
        async with fake:
            print(f"listening on {fake.base_url}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
