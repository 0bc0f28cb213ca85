"""The ``bedrock_converse`` adapter: Amazon Bedrock's Converse API.

Requests are signed with AWS Signature Version 4 by botocore (service
``bedrock``, the source's region) afresh for every attempt; a ``bearer``
source (Bedrock API keys) is sent as is. Replies and event streams are
reshaped into Anthropic's content blocks and translated by the same code
as ``anthropic_messages``, so both providers behave alike. The event stream
is decoded with botocore's ``EventStreamBuffer``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, EventStreamMessage

from shared.errors import ProviderError

from .anthropic_messages import StreamTranslator, from_message
from .base import JSON, Target
from .bedrock_request import converse_body
from .resilience import ProviderCaller
from .wire import ChunkWriter, auth_headers, endpoint_url, model_path, secrets_of

EXCEPTION_STATUS = {
    "throttlingException": 429,
    "validationException": 400,
    "accessDeniedException": 403,
    "modelTimeoutException": 408,
    "modelStreamErrorException": 424,
    "serviceUnavailableException": 503,
}


class BedrockConverse:
    """Call ``/model/{model}/converse`` and ``/converse-stream``."""

    default_path = "/model/{model}/converse"

    def __init__(self, caller: ProviderCaller) -> None:
        self.caller = caller

    async def complete(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> JSON:
        """Return the translated ``chat.completion``."""
        factory = self._factory(client, target, converse_body(request), stream=False)
        reply = await self.caller.send(client, factory, secrets_of(target.auth))
        return from_message(_as_claude_message(reply), request["model"])

    async def stream(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> AsyncIterator[JSON]:
        """Decode the event stream and translate it into OpenAI chunks."""
        factory = self._factory(client, target, converse_body(request), stream=True)
        events = _ClaudeEvents(StreamTranslator(ChunkWriter(request["model"])))
        async with self.caller.open_stream(
            client, factory, secrets_of(target.auth)
        ) as response:
            buffer = EventStreamBuffer()
            async for data in response.aiter_bytes():
                buffer.add_data(data)
                for message in buffer:
                    for chunk in events.feed(message):
                        yield chunk
        for chunk in events.translator.feed("message_stop", {}):
            yield chunk

    def _factory(
        self, client: httpx.AsyncClient, target: Target, body: JSON, *, stream: bool
    ) -> Callable[[], httpx.Request]:
        path = model_path(target.path, self.default_path, target.provider_model)
        if stream:
            path = path.removesuffix("/converse") + "/converse-stream"
        url = endpoint_url(target, path)
        content = json.dumps(body).encode()

        def build() -> httpx.Request:
            headers = _auth(target, url, content)
            return client.build_request("POST", url, content=content, headers=headers)

        return build


def _auth(target: Target, url: str, content: bytes) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if target.auth.get("type") != "aws_sigv4":
        return {**headers, **auth_headers(target.auth, "authorization")}
    credentials = Credentials(
        target.auth["access_key_id"],
        target.auth["secret"],
        target.auth.get("session_token"),
    )
    signed = AWSRequest(method="POST", url=url, data=content, headers=headers)
    SigV4Auth(credentials, "bedrock", target.auth["region"]).add_auth(signed)
    return dict(signed.headers.items())


def _as_claude_message(reply: JSON) -> JSON:
    message = (reply.get("output") or {}).get("message") or {}
    raw = reply.get("usage") or {}
    return {
        "id": (reply.get("ResponseMetadata") or {}).get("RequestId", ""),
        "content": [_claude_block(block) for block in message.get("content") or []],
        "stop_reason": reply.get("stopReason"),
        "usage": _claude_usage(raw),
    }


def _claude_block(block: JSON) -> JSON:
    if "text" in block:
        return {"type": "text", "text": block["text"]}
    if "toolUse" in block:
        use = block["toolUse"]
        return {"type": "tool_use", "id": use["toolUseId"], "name": use["name"],
                "input": use.get("input") or {}}  # fmt: skip
    reasoning = block.get("reasoningContent") or {}
    if "redactedContent" in reasoning:
        return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    if "reasoningText" in reasoning:
        text = reasoning["reasoningText"]
        return {"type": "thinking", "thinking": text.get("text", ""),
                "signature": text.get("signature", "")}  # fmt: skip
    return {"type": "unknown"}


def _claude_usage(raw: JSON) -> JSON:
    return {
        "input_tokens": raw.get("inputTokens"),
        "output_tokens": raw.get("outputTokens"),
        "cache_read_input_tokens": raw.get("cacheReadInputTokens"),
        "cache_creation_input_tokens": raw.get("cacheWriteInputTokens"),
    }


class _ClaudeEvents:
    """Reshape Converse stream events into Anthropic stream events."""

    def __init__(self, translator: StreamTranslator) -> None:
        self.translator = translator
        self.started: set[int] = set()

    def feed(self, message: EventStreamMessage) -> list[JSON]:
        headers = message.headers
        payload: JSON = json.loads(message.payload or b"{}")
        if headers.get(":message-type") == "exception":
            _raise_exception(str(headers.get(":exception-type")), payload)
        handler = getattr(self, f"_on_{headers.get(':event-type')}", None)
        return handler(payload) if handler else []

    def _on_messageStart(self, payload: JSON) -> list[JSON]:  # noqa: N802
        return self.translator.feed("message_start", {"message": {}})

    def _on_contentBlockStart(self, payload: JSON) -> list[JSON]:  # noqa: N802
        index = payload["contentBlockIndex"]
        use = (payload.get("start") or {}).get("toolUse") or {}
        block = {
            "type": "tool_use",
            "id": use.get("toolUseId"),
            "name": use.get("name"),
        }
        return self._start(index, block)

    def _on_contentBlockDelta(self, payload: JSON) -> list[JSON]:  # noqa: N802
        index, delta = payload["contentBlockIndex"], payload.get("delta") or {}
        reasoning = delta.get("reasoningContent")
        if "text" in delta:
            return self._delta(
                index, {"type": "text"}, {"type": "text_delta", "text": delta["text"]}
            )
        if "toolUse" in delta:
            partial = {
                "type": "input_json_delta",
                "partial_json": delta["toolUse"]["input"],
            }
            return self._delta(index, {"type": "tool_use"}, partial)
        if reasoning is None:
            return []
        return self._reasoning(index, reasoning)

    def _reasoning(self, index: int, reasoning: JSON) -> list[JSON]:
        if "redactedContent" in reasoning:
            block = {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
            return self._start(index, block)
        if "signature" in reasoning:
            delta = {"type": "signature_delta", "signature": reasoning["signature"]}
        else:
            delta = {"type": "thinking_delta", "thinking": reasoning.get("text", "")}
        return self._delta(index, {"type": "thinking", "thinking": ""}, delta)

    def _on_contentBlockStop(self, payload: JSON) -> list[JSON]:  # noqa: N802
        return self.translator.feed(
            "content_block_stop", {"index": payload["contentBlockIndex"]}
        )

    def _on_messageStop(self, payload: JSON) -> list[JSON]:  # noqa: N802
        delta = {"delta": {"stop_reason": payload.get("stopReason")}}
        return self.translator.feed("message_delta", delta)

    def _on_metadata(self, payload: JSON) -> list[JSON]:
        if "usage" not in payload:
            return []
        usage = {
            k: v for k, v in _claude_usage(payload["usage"]).items() if v is not None
        }
        return self.translator.feed("message_delta", {"delta": {}, "usage": usage})

    def _start(self, index: int, block: JSON) -> list[JSON]:
        self.started.add(index)
        start = {"index": index, "content_block": block}
        return self.translator.feed("content_block_start", start)

    def _delta(self, index: int, block: JSON, delta: JSON) -> list[JSON]:
        # Converse announces only tool blocks; text and reasoning just begin.
        chunks = [] if index in self.started else self._start(index, block)
        return chunks + self.translator.feed(
            "content_block_delta", {"index": index, "delta": delta}
        )


def _raise_exception(kind: str, payload: Any) -> None:
    message = str((payload or {}).get("message") or kind)
    raise ProviderError(
        f"provider failed mid-stream: {kind}: {message}"[:300],
        provider_status=EXCEPTION_STATUS.get(kind, 500),
    )
