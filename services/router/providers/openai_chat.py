"""The ``openai_chat`` and ``azure_openai_chat`` adapters: OpenAI's own wire.

Requests pass through nearly unchanged (OpenAI, xAI and OpenAI-compatible
servers speak the contract's format). Only the model name, the gateway's
own reasoning fields and, for streams, ``stream_options.include_usage`` are
adjusted; answers get the client's model name and complete usage details.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx

from shared.errors import ProviderError

from .base import JSON, Target
from .resilience import ProviderCaller
from .sse import sse_events
from .wire import auth_headers, endpoint_url, model_path, secrets_of, usage

# Gateway-only fields that OpenAI-style servers reject or misread as input.
GATEWAY_MESSAGE_FIELDS = ("reasoning_content", "reasoning_blocks")
AZURE_API_VERSION = "2024-10-21"
STREAM_ERROR_STATUS = 502


class OpenAIChat:
    """Call ``POST {base}{path}`` with the request in OpenAI's format."""

    default_path: ClassVar[str] = "/v1/chat/completions"
    default_auth_header: ClassVar[str] = "authorization"

    def __init__(self, caller: ProviderCaller) -> None:
        self.caller = caller

    async def complete(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> JSON:
        """Return the provider's completion under the client's model name."""
        body = self.body(target, request, stream=False)
        reply = await self.caller.send(
            client, self._factory(client, target, body), secrets_of(target.auth)
        )
        reply["model"] = request["model"]
        if isinstance(reply.get("usage"), dict):
            reply["usage"] = normalized_usage(reply["usage"])
        return reply

    async def stream(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> AsyncIterator[JSON]:
        """Relay the provider's chunks; usage comes last, alone, if reported."""
        body = self.body(target, request, stream=True)
        factory = self._factory(client, target, body)
        reported: JSON | None = None
        head: JSON = {}
        async with self.caller.open_stream(
            client, factory, secrets_of(target.auth)
        ) as response:
            async for chunk in _chunks(response):
                chunk["model"] = request["model"]
                head = {key: chunk.get(key) for key in ("id", "object", "created")}
                reported = chunk.pop("usage", None) or reported
                if chunk.get("choices"):
                    yield chunk
        if reported:
            yield {
                **head,
                "model": request["model"],
                "choices": [],
                "usage": (normalized_usage(reported)),
            }

    def body(self, target: Target, request: JSON, *, stream: bool) -> JSON:
        """Build the provider request body."""
        body = {**request, "model": target.provider_model, "stream": stream}
        body["messages"] = [_outbound(message) for message in request["messages"]]
        if stream:
            body["stream_options"] = {
                **(request.get("stream_options") or {}),
                "include_usage": True,
            }
        else:
            body.pop("stream_options", None)
        return body

    def url(self, target: Target) -> str:
        """Return the chat completions URL of the target."""
        return endpoint_url(
            target, model_path(target.path, self.default_path, target.provider_model)
        )

    def _factory(self, client: httpx.AsyncClient, target: Target, body: JSON) -> Any:
        headers = auth_headers(target.auth, self.default_auth_header)
        url = self.url(target)
        return lambda: client.build_request("POST", url, json=body, headers=headers)


class AzureOpenAIChat(OpenAIChat):
    """Call an Azure OpenAI deployment: path holds the deployment, key header.

    The endpoint path may carry ``{model}`` for the deployment and its own
    ``api-version`` query; without one, ``AZURE_API_VERSION`` is used
    (reasoning models need a newer version, set it in the path).
    """

    default_path = "/openai/deployments/{model}/chat/completions"
    default_auth_header = "api-key"

    def body(self, target: Target, request: JSON, *, stream: bool) -> JSON:
        """Build the body; Azure takes the deployment from the path, not model."""
        body = super().body(target, request, stream=stream)
        body.pop("model")
        return body

    def url(self, target: Target) -> str:
        """Return the deployment URL with an ``api-version``."""
        url = super().url(target)
        if "api-version=" in url:
            return url
        separator = "&" if "?" in url else "?"
        return f"{url}{separator}api-version={AZURE_API_VERSION}"


def normalized_usage(raw: JSON) -> JSON:
    """Fill the usage details OpenAI-compatible servers may leave out."""
    completion_details = raw.get("completion_tokens_details") or {}
    prompt_details = raw.get("prompt_tokens_details") or {}
    filled = usage(
        int(raw.get("prompt_tokens") or 0),
        int(raw.get("completion_tokens") or 0),
        int(completion_details.get("reasoning_tokens") or 0),
        int(prompt_details.get("cached_tokens") or 0),
    )
    filled["completion_tokens_details"] = {
        **completion_details,
        **filled["completion_tokens_details"],
    }
    filled["prompt_tokens_details"] = {
        **prompt_details,
        **filled["prompt_tokens_details"],
    }
    return filled


def _outbound(message: JSON) -> JSON:
    if message.get("role") != "assistant":
        return message
    return {k: v for k, v in message.items() if k not in GATEWAY_MESSAGE_FIELDS}


async def _chunks(response: httpx.Response) -> AsyncIterator[JSON]:
    async for _, data in sse_events(response):
        if data.strip() == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise ProviderError(
                "provider sent a stream event that is not JSON",
                provider_status=STREAM_ERROR_STATUS,
            ) from exc
        if "error" in chunk:
            message = (chunk["error"] or {}).get("message", "stream error")
            raise ProviderError(
                f"provider failed mid-stream: {message}"[:300],
                provider_status=STREAM_ERROR_STATUS,
            )
        yield chunk
