"""The ``gemini_generate_content`` adapter: the Gemini API (API key).

Calls ``models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``
with the key in ``x-goog-api-key``. Vertex AI service-account sources
(``google_service_account``) are refused: minting their OAuth tokens needs
google-auth and a token round trip the gateway does not make yet.
Thought parts become ``reasoning_content``; ``thoughtSignature`` values
become ``reasoning_blocks`` entries tied to their tool call (or ``None`` for
a text part). ``reasoning_tokens`` is Gemini's ``thoughtsTokenCount``, and
completion tokens include it, as OpenAI counts them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx

from shared.errors import InvalidRequest

from .base import JSON, Target
from .gemini_request import call_id, generate_body
from .resilience import ProviderCaller
from .sse import sse_events
from .wire import (
    ChunkWriter,
    assistant_message,
    auth_headers,
    completion,
    endpoint_url,
    model_path,
    secrets_of,
    tool_call,
    usage,
)

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


class GeminiGenerateContent:
    """Call the Gemini API's generateContent methods."""

    default_path = "/v1beta/models/{model}:generateContent"

    def __init__(self, caller: ProviderCaller) -> None:
        self.caller = caller

    async def complete(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> JSON:
        """Return the translated ``chat.completion``."""
        factory = self._factory(client, target, generate_body(request), stream=False)
        reply = await self.caller.send(client, factory, secrets_of(target.auth))
        return from_response(reply, request["model"])

    async def stream(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> AsyncIterator[JSON]:
        """Translate each streamed response into OpenAI chunks."""
        factory = self._factory(client, target, generate_body(request), stream=True)
        translator = StreamTranslator(ChunkWriter(request["model"]))
        async with self.caller.open_stream(
            client, factory, secrets_of(target.auth)
        ) as response:
            async for _, data in sse_events(response):
                for chunk in translator.feed(json.loads(data)):
                    yield chunk
        for chunk in translator.close():
            yield chunk

    def _factory(
        self, client: httpx.AsyncClient, target: Target, body: JSON, *, stream: bool
    ) -> Callable[[], httpx.Request]:
        if target.auth.get("type") == "google_service_account":
            raise InvalidRequest(
                "Vertex AI service-account sources are not supported yet; "
                "use an API key source",
                field="auth.type",
            )
        path = model_path(target.path, self.default_path, target.provider_model)
        if stream:
            path = path.replace(":generateContent", ":streamGenerateContent")
            path += "&alt=sse" if "?" in path else "?alt=sse"
        url = endpoint_url(target, path)
        headers = auth_headers(target.auth, "x-goog-api-key")
        return lambda: client.build_request("POST", url, json=body, headers=headers)


class _Parts:
    """Collect one response's parts as OpenAI message pieces."""

    def __init__(self) -> None:
        self.text = ""
        self.reasoning = ""
        self.calls: list[JSON] = []
        self.blocks: list[JSON] = []

    def add(self, part: JSON) -> None:
        if part.get("thought"):
            self.reasoning += part.get("text", "")
        elif "functionCall" in part:
            call = part["functionCall"]
            args = call.get("args") or {}
            id_ = call.get("id") or call_id(call["name"], args, len(self.calls))
            self.calls.append(tool_call(id_, call["name"], json.dumps(args)))
        elif "text" in part:
            self.text += part["text"]
        if part.get("thoughtSignature"):
            owner = self.calls[-1]["id"] if "functionCall" in part else None
            self.blocks.append(_signature_block(part["thoughtSignature"], owner))


def from_response(reply: JSON, model: str) -> JSON:
    """Translate a ``GenerateContentResponse`` into a ``chat.completion``."""
    candidate = (reply.get("candidates") or [{}])[0]
    parts = _Parts()
    for part in (candidate.get("content") or {}).get("parts") or []:
        parts.add(part)
    finish = _finish(candidate.get("finishReason"), bool(parts.calls))
    if not reply.get("candidates") and (reply.get("promptFeedback") or {}).get(
        "blockReason"
    ):
        finish = "content_filter"
    message = assistant_message(
        parts.text if parts.text or not parts.calls else None,
        parts.calls,
        parts.reasoning,
        parts.blocks,
    )
    return completion(model, message, finish, _usage(reply.get("usageMetadata") or {}))


def _signature_block(signature: str, owner: str | None) -> JSON:
    return {"type": "thought_signature", "signature": signature, "tool_call_id": owner}


def _finish(reason: object, has_calls: bool) -> str:
    if has_calls and reason in (None, "STOP"):
        return "tool_calls"
    return FINISH_REASONS.get(str(reason), "stop")


def _usage(raw: JSON) -> JSON:
    thoughts = int(raw.get("thoughtsTokenCount") or 0)
    return usage(
        int(raw.get("promptTokenCount") or 0),
        int(raw.get("candidatesTokenCount") or 0) + thoughts,
        thoughts,
        int(raw.get("cachedContentTokenCount") or 0),
    )


class StreamTranslator:
    """Turn streamed ``GenerateContentResponse`` objects into OpenAI chunks."""

    def __init__(self, writer: ChunkWriter) -> None:
        self.writer = writer
        self.started = False
        self.calls = 0
        self.finish_reason: object = None
        self.raw_usage: JSON | None = None

    def feed(self, reply: JSON) -> list[JSON]:
        """Return the chunks one streamed response produces."""
        chunks = [] if self.started else [self.writer.role()]
        self.started = True
        self.raw_usage = reply.get("usageMetadata") or self.raw_usage
        candidate = (reply.get("candidates") or [{}])[0]
        self.finish_reason = candidate.get("finishReason") or self.finish_reason
        for part in (candidate.get("content") or {}).get("parts") or []:
            chunks += self._part(part)
        return chunks

    def close(self) -> list[JSON]:
        """Finish the choice, then report usage when Gemini gave it."""
        chunks = [self.writer.finish(_finish(self.finish_reason, self.calls > 0))]
        if self.raw_usage is not None:
            chunks.append(self.writer.usage(_usage(self.raw_usage)))
        return chunks

    def _part(self, part: JSON) -> list[JSON]:
        chunks: list[JSON] = []
        owner = None
        if part.get("thought"):
            chunks.append(self.writer.reasoning(part.get("text", "")))
        elif "functionCall" in part:
            call = part["functionCall"]
            args = call.get("args") or {}
            owner = call.get("id") or call_id(call["name"], args, self.calls)
            chunks.append(
                self.writer.tool_start(
                    self.calls, owner, call["name"], json.dumps(args)
                )
            )
            self.calls += 1
        elif part.get("text"):
            chunks.append(self.writer.text(part["text"]))
        if part.get("thoughtSignature"):
            block = _signature_block(part["thoughtSignature"], owner)
            chunks.append(self.writer.reasoning_block(block))
        return chunks
