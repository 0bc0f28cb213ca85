"""Which declared capabilities a request needs, and its prompt-token estimate.

Both run before any quota is taken: the router refuses an undeclared
capability with ``capability_unsupported`` and reserves the estimate.
"""

from __future__ import annotations

import json
from typing import Any

# A rough cost of the role and framing tokens every provider adds per message.
MESSAGE_OVERHEAD_TOKENS = 4
CHARS_PER_TOKEN = 4


def capabilities_used(request: dict[str, Any]) -> set[str]:
    """Return the capabilities (contract names) the request relies on."""
    used: set[str] = set()
    if request.get("tools"):
        used.add("tool_calling")
    if request.get("response_format") and _is_structured(request["response_format"]):
        used.add("structured_outputs")
    if request.get("reasoning_effort") not in (None, "none"):
        used.add("reasoning")
    if request.get("stream"):
        used.add("streaming")
    if any(_has_image(message) for message in request.get("messages") or []):
        used.add("vision")
    return used


def estimate_prompt_tokens(request: dict[str, Any]) -> int:
    """Estimate prompt tokens cheaply, without a tokenizer.

    About one token per four characters of message text and tool schemas, plus
    ``MESSAGE_OVERHEAD_TOKENS`` per message. It over-counts code and
    under-counts CJK text; limits settle to the provider's real count anyway.
    """
    chars = 0
    messages = request.get("messages") or []
    for message in messages:
        chars += _message_chars(message)
    if request.get("tools"):
        chars += len(json.dumps(request["tools"], separators=(",", ":")))
    overhead = MESSAGE_OVERHEAD_TOKENS * len(messages)
    return chars // CHARS_PER_TOKEN + overhead


def _is_structured(response_format: Any) -> bool:
    return isinstance(response_format, dict) and response_format.get("type") in (
        "json_schema",
        "json_object",
    )


def _has_image(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return False
    return any(
        isinstance(part, dict) and part.get("type") == "image_url" for part in content
    )


def _message_chars(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    content = message.get("content")
    chars = len(content) if isinstance(content, str) else 0
    if isinstance(content, list):
        chars += sum(
            len(part.get("text", "")) for part in content if isinstance(part, dict)
        )
    for call in message.get("tool_calls") or []:
        chars += len(json.dumps(call, separators=(",", ":")))
    return chars
