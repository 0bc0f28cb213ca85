"""The ``anthropic_messages`` adapter: Anthropic's Messages API.

The request translation lives in ``anthropic_request``; this module calls
``POST {base}/v1/messages`` and turns replies and SSE streams back into
OpenAI shapes. Thinking blocks come back as ``reasoning_content`` plus
``reasoning_blocks`` entries (``{"type": "thinking", "thinking", "signature"}``
or ``{"type": "redacted_thinking", "data"}``), resent verbatim on the next
turn. Anthropic does not count thinking tokens apart from output tokens, so
``reasoning_tokens`` is estimated from the thinking text (four characters a
token), capped at the output tokens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from shared.errors import ProviderError

from .anthropic_request import STRUCTURED_TOOL, messages_body
from .base import JSON, Target
from .resilience import ProviderCaller
from .sse import sse_events
from .wire import (
    ChunkWriter,
    assistant_message,
    auth_headers,
    completion,
    endpoint_url,
    estimated_reasoning_tokens,
    model_path,
    secrets_of,
    tool_call,
    usage,
)

ANTHROPIC_VERSION = "2023-06-01"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# Anthropic's stream error types, as the HTTP status they would have had.
STREAM_ERROR_STATUS = {"overloaded_error": 529, "rate_limit_error": 429}


class AnthropicMessages:
    """Call Anthropic's Messages API."""

    default_path = "/v1/messages"

    def __init__(self, caller: ProviderCaller) -> None:
        self.caller = caller

    async def complete(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> JSON:
        """Return the translated ``chat.completion``."""
        body = messages_body(request, target.provider_model)
        reply = await self.caller.send(
            client, self._factory(client, target, body), secrets_of(target.auth)
        )
        return from_message(reply, request["model"])

    async def stream(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> AsyncIterator[JSON]:
        """Translate Anthropic's SSE events into OpenAI chunks."""
        body = {**messages_body(request, target.provider_model), "stream": True}
        factory = self._factory(client, target, body)
        translator = StreamTranslator(ChunkWriter(request["model"]))
        async with self.caller.open_stream(
            client, factory, secrets_of(target.auth)
        ) as response:
            async for event, data in sse_events(response):
                for chunk in translator.feed(event, json.loads(data)):
                    yield chunk

    def _factory(
        self, client: httpx.AsyncClient, target: Target, body: JSON
    ) -> Callable[[], httpx.Request]:
        path = model_path(target.path, self.default_path, target.provider_model)
        url = endpoint_url(target, path)
        headers = {
            **auth_headers(target.auth, "x-api-key"),
            "anthropic-version": ANTHROPIC_VERSION,
        }
        return lambda: client.build_request("POST", url, json=body, headers=headers)


def from_message(reply: JSON, model: str) -> JSON:
    """Translate a Messages API reply into a ``chat.completion``."""
    texts, reasoning, blocks, calls = [], [], [], []
    for block in reply.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "thinking":
            reasoning.append(block["thinking"])
            blocks.append(_thinking_block(block))
        elif kind == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
        elif kind == "tool_use" and block["name"] == STRUCTURED_TOOL:
            texts.append(json.dumps(block["input"]))
        elif kind == "tool_use":
            calls.append(
                tool_call(block["id"], block["name"], json.dumps(block["input"]))
            )
    finish = _finish(reply.get("stop_reason"), bool(calls))
    message = assistant_message(
        "".join(texts) if texts or not calls else None,
        calls,
        "".join(reasoning),
        blocks,
    )
    counts = _usage(reply.get("usage") or {}, "".join(reasoning))
    return completion(model, message, finish, counts, _id(reply))


def _thinking_block(block: JSON) -> JSON:
    return {
        "type": "thinking",
        "thinking": block["thinking"],
        "signature": block.get("signature", ""),
    }


def _finish(stop_reason: Any, has_calls: bool) -> str:
    finish = FINISH_REASONS.get(str(stop_reason), "stop")
    # The emulated structured-output tool is an answer, not a tool call.
    return "stop" if finish == "tool_calls" and not has_calls else finish


def _usage(raw: JSON, reasoning_text: str) -> JSON:
    cached = int(raw.get("cache_read_input_tokens") or 0)
    prompt = (
        int(raw.get("input_tokens") or 0)
        + cached
        + int(raw.get("cache_creation_input_tokens") or 0)
    )
    output = int(raw.get("output_tokens") or 0)
    return usage(
        prompt, output, estimated_reasoning_tokens(reasoning_text, output), cached
    )


def _id(reply: JSON) -> str:
    return f"chatcmpl-{reply['id']}" if reply.get("id") else ""


class StreamTranslator:
    """Turn Anthropic stream events into OpenAI chunks, keeping block state."""

    def __init__(self, writer: ChunkWriter) -> None:
        self.writer = writer
        self.raw_usage: JSON = {}
        self.output_reported = False
        self.stop_reason: str | None = None
        self.reasoning = ""
        self.blocks: dict[int, JSON] = {}
        self.tool_indexes: dict[int, int] = {}

    def feed(self, event: str, data: JSON) -> list[JSON]:
        """Return the chunks one event produces (often none or one)."""
        handler = getattr(self, f"_on_{event}", None)
        return handler(data) if handler else []

    def _on_message_start(self, data: JSON) -> list[JSON]:
        message = data.get("message") or {}
        if message.get("id"):
            self.writer.id = f"chatcmpl-{message['id']}"
        self.raw_usage.update(message.get("usage") or {})
        return [self.writer.role()]

    def _on_content_block_start(self, data: JSON) -> list[JSON]:
        index, block = data["index"], dict(data["content_block"])
        self.blocks[index] = block
        if block["type"] == "text" and block.get("text"):
            return [self.writer.text(block["text"])]
        if block["type"] != "tool_use" or block["name"] == STRUCTURED_TOOL:
            return []
        self.tool_indexes[index] = len(self.tool_indexes)
        return [
            self.writer.tool_start(self.tool_indexes[index], block["id"], block["name"])
        ]

    def _on_content_block_delta(self, data: JSON) -> list[JSON]:
        index, delta = data["index"], data["delta"]
        block = self.blocks.get(index, {})
        kind = delta.get("type")
        if kind == "text_delta":
            return [self.writer.text(delta["text"])]
        if kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta["thinking"]
            self.reasoning += delta["thinking"]
            return [self.writer.reasoning(delta["thinking"])]
        if kind == "signature_delta":
            block["signature"] = block.get("signature", "") + delta["signature"]
            return []
        if kind == "input_json_delta" and index in self.tool_indexes:
            return [
                self.writer.tool_arguments(
                    self.tool_indexes[index], delta["partial_json"]
                )
            ]
        if kind == "input_json_delta":
            return [self.writer.text(delta["partial_json"])]
        return []

    def _on_content_block_stop(self, data: JSON) -> list[JSON]:
        block = self.blocks.get(data["index"], {})
        if block.get("type") == "thinking":
            return [self.writer.reasoning_block(_thinking_block(block))]
        if block.get("type") == "redacted_thinking":
            redacted = {"type": "redacted_thinking", "data": block["data"]}
            return [self.writer.reasoning_block(redacted)]
        return []

    def _on_message_delta(self, data: JSON) -> list[JSON]:
        delta = data.get("delta") or {}
        self.stop_reason = delta.get("stop_reason") or self.stop_reason
        reported = data.get("usage") or {}
        self.output_reported = self.output_reported or "output_tokens" in reported
        self.raw_usage.update({k: v for k, v in reported.items() if v is not None})
        return []

    def _on_message_stop(self, data: JSON) -> list[JSON]:
        chunks = [
            self.writer.finish(_finish(self.stop_reason, bool(self.tool_indexes)))
        ]
        if self.output_reported:
            chunks.append(self.writer.usage(_usage(self.raw_usage, self.reasoning)))
        return chunks

    def _on_error(self, data: JSON) -> list[JSON]:
        error = data.get("error") or {}
        status = STREAM_ERROR_STATUS.get(str(error.get("type")), 500)
        message = str(error.get("message") or error.get("type") or "stream error")
        raise ProviderError(
            f"provider failed mid-stream: {message}"[:300], provider_status=status
        )
