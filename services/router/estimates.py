"""Token counts the gateway estimates when a provider does not report them.

The same rough rule as the prompt estimate: about four characters a token.
Events built from these say ``usage_source: estimated``.
"""

from __future__ import annotations

import json
from typing import Any

CHARS_PER_TOKEN = 4


def completion_tokens_of(text_chars: int) -> int:
    """Estimate the tokens of generated text from its length in characters."""
    return (text_chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimated_usage(prompt_tokens: int, completion: dict[str, Any]) -> dict[str, Any]:
    """Estimate the usage of a completion whose provider reported none."""
    chars = 0
    for choice in completion.get("choices") or []:
        message = choice.get("message") or {}
        chars += len(message.get("content") or "")
        chars += len(message.get("reasoning_content") or "")
        for call in message.get("tool_calls") or []:
            chars += len(json.dumps(call.get("function", {})))
    return usage_of(prompt_tokens, completion_tokens_of(chars))


def usage_of(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """Build an OpenAI usage object from two counts."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": 0},
        "prompt_tokens_details": {"cached_tokens": 0},
    }
