"""An OpenAI-compatible provider that answers instantly, for the benchmark.

Raw asyncio, HTTP/1.1 keep-alive, no framework: the provider must never be
what limits the gateway. ``POST /v1/chat/completions`` with the right bearer
token gets a fixed ``chat.completion`` (12 prompt and 8 completion tokens),
or a fixed SSE stream ending in a usage chunk when the body asks for
``"stream": true``. ``POST /v1/traces`` accepts OTLP spans and drops them, so
the services can export their traces somewhere cheap.

    python -m bench.provider --port 8089
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import orjson

API_KEY = "sk-fake-openai-key"
CHAT_PATH = b"/v1/chat/completions"
TRACES_PATH = b"/v1/traces"
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 8,
    "total_tokens": 20,
    "completion_tokens_details": {"reasoning_tokens": 0},
    "prompt_tokens_details": {"cached_tokens": 0},
}
MAX_HEAD_BYTES = 65536


def _response(status: str, content_type: bytes, body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type
        + b"\r\ncontent-length: " + str(len(body)).encode()
        + b"\r\nconnection: keep-alive\r\n\r\n"
    )  # fmt: skip
    return head + body


def _completion() -> bytes:
    message = {"role": "assistant", "content": "Hello from the bench provider."}
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "bench-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    return _response("200 OK", b"application/json", orjson.dumps(body))


def _stream() -> bytes:
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": "bench-model"}  # fmt: skip
    deltas = [{"role": "assistant", "content": ""}, {"content": "Hello"},
              {"content": " from the bench"}, {"content": " provider."}]  # fmt: skip
    chunks = [
        {**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
        for d in deltas
    ]
    stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
    chunks.append({**head, "choices": [stop]})
    chunks.append({**head, "choices": [], "usage": USAGE})
    events = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
    return _response(
        "200 OK", b"text/event-stream", b"".join([*events, b"data: [DONE]\n\n"])
    )


def _error(status: str, message: str) -> bytes:
    body = {"error": {"message": message, "type": "invalid_request_error"}}
    return _response(status, b"application/json", orjson.dumps(body))


class Answers:
    """The fixed replies, built once."""

    def __init__(self) -> None:
        self.completion = _completion()
        self.stream = _stream()
        self.unauthorised = _error("401 Unauthorized", "Incorrect API key provided.")
        self.not_found = _error("404 Not Found", "Unknown path.")
        self.accepted = _response("200 OK", b"application/x-protobuf", b"")

    def pick(self, path: bytes, headers: dict[bytes, bytes], body: bytes) -> bytes:
        """Choose the reply to one request."""
        if path == TRACES_PATH:
            return self.accepted
        if path != CHAT_PATH:
            return self.not_found
        if headers.get(b"authorization") != b"Bearer " + API_KEY.encode():
            return self.unauthorised
        if b'"stream":true' in body or b'"stream": true' in body:
            return self.stream
        return self.completion


def _parse_head(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return path, headers


async def _serve_connection(
    answers: Answers, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path, headers = _parse_head(head[:-4])
            length = int(headers.get(b"content-length", b"0"))
            body = await reader.readexactly(length) if length else b""
            writer.write(answers.pick(path, headers, body))
            if headers.get(b"connection", b"").lower() == b"close":
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def start(port: int = 0) -> asyncio.Server:
    """Listen on 127.0.0.1 (a free port when 0) and return the server."""
    answers = Answers()

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await _serve_connection(answers, reader, writer)

    return await asyncio.start_server(
        handle, "127.0.0.1", port, limit=MAX_HEAD_BYTES, backlog=1024
    )


async def _main(port: int) -> None:
    server = await start(port)
    bound = server.sockets[0].getsockname()[1]
    print(f"bench provider listening on http://127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args().port))
