"""Shared building blocks: provider URLs, auth headers, OpenAI reply shapes.

Every adapter answers in OpenAI Chat Completions shapes built here, so the
fields the router and the SDK rely on are spelled once. Two fields go beyond
OpenAI's schema on the assistant message:

``reasoning_content``
    The provider's reasoning text, when it returns one.
``reasoning_blocks``
    Opaque reasoning state (signatures) a client must send back unchanged on
    its next turn so the provider can continue its reasoning. Streams carry
    each completed block once in a delta's ``reasoning_blocks`` list.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import InvalidRequest

from .base import JSON, Target

SECRET_KEYS = ("secret", "access_key_id", "session_token")


def endpoint_url(target: Target, path: str) -> str:
    """Join the target's base URL, explicit port and the given path."""
    url = httpx.URL(target.base_url)
    if target.port is not None:
        url = url.copy_with(port=target.port)
    return str(url).rstrip("/") + path


def model_path(template: str, default: str, provider_model: str) -> str:
    """Fill ``{model}`` in the endpoint path (or the api's default path)."""
    path = template if "{model}" in template else default
    return path.replace("{model}", quote(provider_model, safe=""))


def auth_headers(auth: Mapping[str, Any], default_header: str) -> dict[str, str]:
    """Return headers for ``none``, ``api_key`` and ``bearer`` source auth."""
    kind = auth.get("type", "none")
    if kind == "none":
        return {}
    if kind == "bearer":
        return {"authorization": f"Bearer {auth['secret']}"}
    if kind == "api_key":
        header = str(auth.get("header") or default_header)
        if header.lower() == "authorization":
            return {"authorization": f"Bearer {auth['secret']}"}
        return {header: str(auth["secret"])}
    raise InvalidRequest(
        f"this endpoint api cannot use source auth type {kind!r}; "
        "use none, api_key or bearer",
        field="auth.type",
    )


def secrets_of(auth: Mapping[str, Any]) -> tuple[str, ...]:
    """List the secret strings of a source auth, for redaction."""
    return tuple(str(auth[key]) for key in SECRET_KEYS if auth.get(key))


def max_output_tokens(request: JSON) -> int | None:
    """Return ``max_completion_tokens``, falling back to legacy ``max_tokens``."""
    value = request.get("max_completion_tokens", request.get("max_tokens"))
    return int(value) if value is not None else None


def reasoning_effort(request: JSON) -> str | None:
    """Return the requested effort, ``None`` when reasoning is not asked for."""
    effort = request.get("reasoning_effort")
    return None if effort in (None, "none") else str(effort)


def effort_budget(request: JSON, budgets: Mapping[str, int]) -> int | None:
    """Map ``reasoning_effort`` to a provider token budget, or refuse it."""
    effort = reasoning_effort(request)
    if effort is None:
        return None
    if effort not in budgets:
        raise InvalidRequest(
            f"reasoning_effort must be one of {sorted(budgets)}, got {effort!r}",
            field="reasoning_effort",
        )
    return budgets[effort]


def json_schema_format(request: JSON) -> JSON | None:
    """Return ``response_format.json_schema`` (name, schema), or None."""
    response_format = request.get("response_format")
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format.get("type") != "json_schema":
        raise InvalidRequest(
            "only response_format type json_schema (or text) can be translated "
            f"to this provider, got {response_format.get('type')!r}",
            field="response_format.type",
        )
    spec: JSON = response_format.get("json_schema") or {}
    return spec


def data_url(url: str, field: str) -> tuple[str, str] | None:
    """Split a base64 ``data:`` URL into (media type, base64 data)."""
    if not url.startswith("data:"):
        return None
    header, _, data = url.partition(",")
    media_type = header[5:].removesuffix(";base64")
    if not header.endswith(";base64") or not media_type:
        raise InvalidRequest(
            "image data URLs must be data:<media type>;base64,<data>", field=field
        )
    try:
        base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise InvalidRequest("image data is not valid base64", field=field) from exc
    return media_type, data


def text_of(content: Any, field: str) -> str:
    """Flatten string-or-parts content that may only hold text."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.get("type") != "text":
            raise InvalidRequest(
                f"only text parts are allowed here, got {part.get('type')!r}",
                field=field,
            )
        texts.append(part["text"])
    return "".join(texts)


def usage(prompt: int, completion: int, reasoning: int = 0, cached: int = 0) -> JSON:
    """Build an OpenAI usage object with its details always present."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def estimated_reasoning_tokens(text: str, completion: int) -> int:
    """Estimate reasoning tokens from reasoning text (for providers not counting)."""
    return min(completion, (len(text) + 3) // 4)


def new_id() -> str:
    """Return a fresh completion id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion(
    model: str, message: JSON, finish_reason: str, usage_: JSON, id_: str = ""
) -> JSON:
    """Build an OpenAI ``chat.completion`` with one choice."""
    return {
        "id": id_ or new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": usage_,
    }


def assistant_message(
    text: str | None,
    tool_calls: list[JSON],
    reasoning: str = "",
    blocks: list[JSON] | None = None,
) -> JSON:
    """Build the assistant message, omitting reasoning fields when empty."""
    message: JSON = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = reasoning
    if blocks:
        message["reasoning_blocks"] = blocks
    return message


def call_arguments(raw: Any, field: str) -> JSON:
    """Parse an OpenAI tool call's arguments string into the object it holds."""
    try:
        parsed = json.loads(raw or "{}")
    except ValueError as exc:
        raise InvalidRequest(
            "tool call arguments must be a JSON object string",
            field=f"{field}.function.arguments",
        ) from exc
    if not isinstance(parsed, dict):
        raise InvalidRequest(
            "tool call arguments must be a JSON object",
            field=f"{field}.function.arguments",
        )
    return parsed


def tool_call(id_: str, name: str, arguments: str) -> JSON:
    """Build one OpenAI tool call."""
    return {
        "id": id_,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


class ChunkWriter:
    """Build the ordered ``chat.completion.chunk`` dicts of one stream."""

    def __init__(self, model: str, id_: str = "") -> None:
        self.model = model
        self.id = id_ or new_id()
        self.created = int(time.time())

    def chunk(self, delta: JSON, finish_reason: str | None = None) -> JSON:
        """Build a chunk with one choice carrying the delta."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**self._head(), "choices": [choice]}

    def role(self) -> JSON:
        """Open the assistant message."""
        return self.chunk({"role": "assistant", "content": ""})

    def text(self, text: str) -> JSON:
        """Carry answer text."""
        return self.chunk({"content": text})

    def reasoning(self, text: str) -> JSON:
        """Carry reasoning text."""
        return self.chunk({"reasoning_content": text})

    def reasoning_block(self, block: JSON) -> JSON:
        """Carry one completed opaque reasoning block."""
        return self.chunk({"reasoning_blocks": [block]})

    def tool_start(self, index: int, id_: str, name: str, arguments: str = "") -> JSON:
        """Open a tool call (its arguments may follow in later chunks)."""
        call = {"index": index, **tool_call(id_, name, arguments)}
        return self.chunk({"tool_calls": [call]})

    def tool_arguments(self, index: int, arguments: str) -> JSON:
        """Carry a piece of a tool call's arguments."""
        call = {"index": index, "function": {"arguments": arguments}}
        return self.chunk({"tool_calls": [call]})

    def finish(self, finish_reason: str) -> JSON:
        """Close the choice."""
        return self.chunk({}, finish_reason)

    def usage(self, usage_: JSON) -> JSON:
        """Carry the provider-reported usage, last, with no choices."""
        return {**self._head(), "choices": [], "usage": usage_}

    def _head(self) -> JSON:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }
