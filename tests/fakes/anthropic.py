"""A strict fake of Anthropic's Messages API (``POST /v1/messages``).

It checks what Anthropic checks: the key and version headers, required
``max_tokens``, alternating user/assistant turns, tool results answering
the previous turn's tool uses, the thinking rules (budget, no forced tool,
signed thinking blocks resent before tool uses) and unknown fields.
"""

from __future__ import annotations

import json
from typing import Any

from .server import FakeServer, Recorded, Reply, serve_forever

API_KEY = "sk-ant-fake-key"
FIELDS = {
    "model", "messages", "max_tokens", "system", "tools", "tool_choice",
    "temperature", "top_p", "top_k", "stop_sequences", "stream", "thinking",
    "metadata",
}  # fmt: skip
BLOCKS = {
    "user": {"text", "image", "tool_result", "document"},
    "assistant": {"text", "tool_use", "thinking", "redacted_thinking"},
}
MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
FIXED_TEXT = "Hello from the fake provider."


def error(status: int, message: str, kind: str = "", **headers: str) -> Reply:
    """Answer with Anthropic's error shape."""
    kind = kind or {400: "invalid_request_error", 401: "authentication_error",
                    429: "rate_limit_error", 529: "overloaded_error"}.get(
        status, "api_error")  # fmt: skip
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return Reply.of_json(body, status, headers)


def text_block(text: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": text}


def tool_use(id_: str, name: str, input_: dict[str, Any]) -> dict[str, Any]:
    """A tool_use content block."""
    return {"type": "tool_use", "id": id_, "name": name, "input": input_}


def thinking(text: str, signature: str) -> dict[str, Any]:
    """A signed thinking block."""
    return {"type": "thinking", "thinking": text, "signature": signature}


def message(
    blocks: list[dict[str, Any]],
    stop_reason: str = "end_turn",
    input_tokens: int = 12,
    output_tokens: int = 8,
    cache_read: int = 0,
) -> Reply:
    """Answer with a Messages API reply."""
    return Reply.of_json(
        {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": "claude-fake",
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_read_input_tokens": cache_read,
                "cache_creation_input_tokens": 0,
            },
        }
    )


def stream(
    blocks: list[dict[str, Any]],
    stop_reason: str = "end_turn",
    with_usage: bool = True,
    delay_s: float = 0.0,
    error_type: str | None = None,
) -> Reply:
    """Stream blocks as Anthropic does: each block's start, deltas and stop."""
    start: dict[str, Any] = {"id": "msg_fake", "type": "message", "role": "assistant",
             "content": [], "model": "claude-fake", "stop_reason": None,
             "usage": {"input_tokens": 12, "output_tokens": 1}}  # fmt: skip
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": start})]
    events.append(("ping", {}))
    for index, block in enumerate(blocks):
        events += _block_events(index, block)
    if error_type:
        events.append(
            ("error", {"error": {"type": error_type, "message": "Overloaded"}})
        )
    delta: dict[str, Any] = {"delta": {"stop_reason": stop_reason}}
    if with_usage:
        delta["usage"] = {"output_tokens": 8}
    events += [("message_delta", delta), ("message_stop", {})]
    chunks = [
        f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
        for name, data in events
    ]
    return Reply.of_stream(chunks, "text/event-stream", delay_s)


def _block_events(index: int, block: dict[str, Any]) -> list[tuple[str, Any]]:
    kind = block["type"]
    empty = {"text": {"type": "text", "text": ""},
             "thinking": {"type": "thinking", "thinking": ""},
             "tool_use": {**block, "input": {}}}.get(kind, block)  # fmt: skip
    events: list[tuple[str, Any]] = [
        ("content_block_start", {"index": index, "content_block": empty})
    ]
    for delta in _deltas(block):
        events.append(("content_block_delta", {"index": index, "delta": delta}))
    return [*events, ("content_block_stop", {"index": index})]


def _deltas(block: dict[str, Any]) -> list[dict[str, Any]]:
    kind = block["type"]
    if kind == "text":
        half = len(block["text"]) // 2
        return [{"type": "text_delta", "text": part}
                for part in (block["text"][:half], block["text"][half:])]  # fmt: skip
    if kind == "thinking":
        return [
            {"type": "thinking_delta", "thinking": block["thinking"]},
            {"type": "signature_delta", "signature": block["signature"]},
        ]
    if kind == "tool_use":
        raw = json.dumps(block["input"])
        half = len(raw) // 2
        return [{"type": "input_json_delta", "partial_json": part}
                for part in ("", raw[:half], raw[half:])]  # fmt: skip
    return []


class FakeAnthropic(FakeServer):
    """Validate like Anthropic's Messages API."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        # Thinking Anthropic issued, by signature: a resent block must match.
        self.signed: dict[str, str] = {}

    def remember(self, *blocks: dict[str, Any]) -> None:
        """Record signatures of thinking blocks the fake is scripted to give."""
        for block in blocks:
            if block["type"] == "thinking":
                self.signed[block["signature"]] = block["thinking"]

    def default_reply(self, request: Recorded) -> Reply:
        """Answer with fixed text."""
        if request.json.get("stream"):
            return stream([text_block(FIXED_TEXT)])
        return message([text_block(FIXED_TEXT)])

    def validate(self, request: Recorded) -> Reply | None:
        """Reject what Anthropic would reject."""
        if request.method != "POST" or request.path != "/v1/messages":
            return error(404, f"Not found: {request.path}", "not_found_error")
        if request.headers.get("x-api-key") != API_KEY:
            return error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error(400, "anthropic-version: header is required")
        try:
            body = json.loads(request.body)
        except ValueError:
            return error(400, "invalid JSON body")
        problem = _check_top(body) or _check_turns(body, self.signed)
        return error(400, problem) if problem else None


def _check_top(body: dict[str, Any]) -> str | None:
    extra = sorted(set(body) - FIELDS)
    if extra:
        return f"{extra[0]}: Extra inputs are not permitted"
    if not body.get("model"):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required"
    if not body.get("messages"):
        return "messages: at least one message is required"
    return _check_tools(body) or _check_thinking(body)


def _check_tools(body: dict[str, Any]) -> str | None:
    names = set()
    for tool in body.get("tools") or []:
        if (
            not tool.get("name")
            or (tool.get("input_schema") or {}).get("type") != "object"
        ):
            return "tools: each tool needs a name and an object input_schema"
        names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice and not body.get("tools"):
        return "tool_choice may only be specified while providing tools"
    if choice and choice.get("type") == "tool" and choice.get("name") not in names:
        return f"tool_choice: tool {choice.get('name')!r} not found in tools"
    return None


def _check_thinking(body: dict[str, Any]) -> str | None:
    thinking = body.get("thinking")
    if not thinking:
        return None
    budget = thinking.get("budget_tokens", 0)
    if budget < 1024:
        return "thinking.budget_tokens: Input should be greater than or equal to 1024"
    if budget >= body["max_tokens"]:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    if body.get("temperature") not in (None, 1):
        return "`temperature` may only be set to 1 when thinking is enabled"
    return None


def _check_turns(body: dict[str, Any], signed: dict[str, str]) -> str | None:
    thinking_on = bool(body.get("thinking"))
    previous: dict[str, Any] | None = None
    for index, turn in enumerate(body["messages"]):
        role = turn.get("role")
        if role not in BLOCKS:
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if previous is None and role != "user":
            return "messages: first message must use the user role"
        if previous is not None and previous["role"] == role:
            return "messages: roles must alternate between user and assistant"
        problem = _check_blocks(index, turn, previous, signed, thinking_on)
        if problem:
            return problem
        previous = turn
    return _unanswered(previous)


def _check_blocks(
    index: int,
    turn: dict[str, Any],
    previous: dict[str, Any] | None,
    signed: dict[str, str],
    thinking_on: bool,
) -> str | None:
    content = turn["content"]
    if isinstance(content, str):
        return _unanswered(previous) if turn["role"] == "user" else None
    kinds = [block.get("type") for block in content]
    if set(kinds) - BLOCKS[turn["role"]]:
        return f"messages.{index}.content: unexpected block type in {kinds}"
    for block in content:
        problem = _check_block(index, block, signed)
        if problem:
            return problem
    if turn["role"] == "user":
        return _check_results(index, content, previous)
    if (
        thinking_on
        and "tool_use" in kinds
        and kinds[0] not in ("thinking", "redacted_thinking")
    ):
        return (f"messages.{index}.content.0.type: Expected `thinking` or "
                "`redacted_thinking`, but found `tool_use`.")  # fmt: skip
    return None


def _check_block(
    index: int, block: dict[str, Any], signed: dict[str, str]
) -> str | None:
    kind = block["type"]
    if kind == "thinking" and signed.get(block.get("signature", "")) != block.get(
        "thinking"
    ):
        return f"messages.{index}: Invalid `signature` in `thinking` block"
    if kind == "image":
        source = block.get("source") or {}
        if (
            source.get("type") == "base64"
            and source.get("media_type") not in MEDIA_TYPES
        ):
            return f"messages.{index}: image media_type {source.get('media_type')!r}"
        if source.get("type") not in ("base64", "url"):
            return f"messages.{index}: image source type must be base64 or url"
    if kind == "tool_use" and not isinstance(block.get("input"), dict):
        return f"messages.{index}: tool_use.input must be an object"
    return None


def _check_results(
    index: int, content: list[dict[str, Any]], previous: dict[str, Any] | None
) -> str | None:
    wanted = _tool_use_ids(previous)
    results = [block for block in content if block["type"] == "tool_result"]
    given = [block["tool_use_id"] for block in results]
    if set(given) - wanted:
        return (
            f"messages.{index}: unexpected `tool_use_id` found in `tool_result` blocks"
        )
    if wanted - set(given):
        return _unanswered(previous)
    if content[: len(results)] != results:
        return f"messages.{index}: tool_result blocks must come first"
    return None


def _unanswered(previous: dict[str, Any] | None) -> str | None:
    if (
        previous is None
        or previous["role"] != "assistant"
        or not _tool_use_ids(previous)
    ):
        return None
    return ("`tool_use` ids were found without `tool_result` blocks immediately "
            "after")  # fmt: skip


def _tool_use_ids(turn: dict[str, Any] | None) -> set[str]:
    if turn is None or turn["role"] != "assistant" or isinstance(turn["content"], str):
        return set()
    return {block["id"] for block in turn["content"] if block["type"] == "tool_use"}


if __name__ == "__main__":
    serve_forever(FakeAnthropic(), "A strict fake Anthropic Messages API server.")
