"""Translate an OpenAI chat request into an Anthropic Messages request.

Rules beyond a one-to-one mapping, each chosen so nothing is silently lost:

- system and developer messages, wherever they appear, join the top-level
  ``system`` text in order; consecutive turns of one role are merged because
  Anthropic requires alternating roles; tool results become ``tool_result``
  blocks at the head of the next user turn.
- ``max_tokens`` is required by Anthropic: ``max_completion_tokens`` (or
  ``max_tokens``), else ``DEFAULT_MAX_TOKENS`` (plus the thinking budget).
- ``reasoning_effort`` becomes ``thinking.budget_tokens`` per
  ``THINKING_BUDGETS``, capped at half of an explicit token limit; a limit
  leaving less than Anthropic's 1024-token minimum is refused. Anthropic
  rejects thinking together with a forced tool (so with emulated structured
  output too) and with a temperature other than 1: those are refused with
  ``invalid_request`` naming the field, never silently dropped.
- ``response_format`` json_schema is emulated with a tool named
  ``STRUCTURED_TOOL`` whose input schema is the requested schema, forced
  when the request has no other tool (``any`` when it has: the model calls a
  real tool or answers through the schema); its input is returned as the
  message content.
"""

from __future__ import annotations

from typing import Any

from shared.errors import InvalidRequest

from .base import JSON
from .wire import (
    call_arguments,
    data_url,
    effort_budget,
    json_schema_format,
    max_output_tokens,
    text_of,
)

THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
MIN_THINKING_BUDGET = 1024
DEFAULT_MAX_TOKENS = 4096
STRUCTURED_TOOL = "structured_output"
FORCED_CHOICES = ("any", "tool")


def messages_body(request: JSON, provider_model: str) -> JSON:
    """Build the Messages API body for the request."""
    system, messages = translate_messages(request["messages"])
    body: JSON = {"model": provider_model, "messages": messages}
    if system:
        body["system"] = system
    body.update(_sampling(request))
    body.update(tool_fields(request))
    budget = effort_budget(request, THINKING_BUDGETS)
    body["max_tokens"], thinking = token_limits(request, budget)
    if thinking:
        _check_thinking_conflicts(request, body)
        body["thinking"] = thinking
    return body


def token_limits(request: JSON, budget: int | None) -> tuple[int, JSON | None]:
    """Return ``max_tokens`` and the ``thinking`` object for the request."""
    limit = max_output_tokens(request)
    if budget is None:
        return limit or DEFAULT_MAX_TOKENS, None
    if limit is None:
        return budget + DEFAULT_MAX_TOKENS, {"type": "enabled", "budget_tokens": budget}
    budget = min(budget, limit // 2)
    if budget < MIN_THINKING_BUDGET:
        raise InvalidRequest(
            "reasoning on this model needs max_completion_tokens of at least "
            f"{2 * MIN_THINKING_BUDGET}; raise it or drop reasoning_effort",
            field="max_completion_tokens",
        )
    return limit, {"type": "enabled", "budget_tokens": budget}


def translate_messages(messages: list[JSON]) -> tuple[str, list[JSON]]:
    """Split system text off and turn the rest into alternating turns."""
    system: list[str] = []
    turns: list[JSON] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        field = f"messages[{index}]"
        if role in ("system", "developer"):
            system.append(text_of(message.get("content"), f"{field}.content"))
            continue
        anthropic_role, blocks = _blocks(message, field)
        if turns and turns[-1]["role"] == anthropic_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": anthropic_role, "content": blocks})
    return "\n\n".join(system), turns


def tool_fields(request: JSON) -> JSON:
    """Translate tools, tool_choice and parallel_tool_calls (and the schema)."""
    tools = [_tool(tool) for tool in request.get("tools") or []]
    choice = _tool_choice(request.get("tool_choice"))
    spec = json_schema_format(request)
    if spec is not None:
        tools.append(_schema_tool(spec))
        choice = _structured_choice(choice, len(tools) > 1)
    if not tools:
        return {}
    if request.get("parallel_tool_calls") is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return {"tools": tools, "tool_choice": choice}


def _blocks(message: JSON, field: str) -> tuple[str, list[JSON]]:
    role = message.get("role")
    if role == "user":
        return "user", _user_blocks(message.get("content"), field)
    if role == "assistant":
        return "assistant", _assistant_blocks(message, field)
    if role == "tool":
        result = {
            "type": "tool_result",
            "tool_use_id": message["tool_call_id"],
            "content": text_of(message.get("content"), f"{field}.content"),
        }
        return "user", [result]
    raise InvalidRequest(
        f"role must be system, developer, user, assistant or tool, got {role!r}",
        field=f"{field}.role",
    )


def _user_blocks(content: Any, field: str) -> list[JSON]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for index, part in enumerate(content or []):
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            blocks.append(_image(part["image_url"]["url"], f"{field}.content[{index}]"))
        else:
            raise InvalidRequest(
                f"content part type {part.get('type')!r} cannot be sent to Anthropic",
                field=f"{field}.content[{index}].type",
            )
    return blocks


def _image(url: str, field: str) -> JSON:
    inline = data_url(url, field)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = inline
    source = {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "image", "source": source}


def _assistant_blocks(message: JSON, field: str) -> list[JSON]:
    blocks: list[JSON] = [
        dict(block)
        for block in message.get("reasoning_blocks") or []
        if block.get("type") in ("thinking", "redacted_thinking")
    ]
    text = text_of(message.get("content"), f"{field}.content")
    if text:
        blocks.append({"type": "text", "text": text})
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        arguments = call_arguments(
            function.get("arguments"), f"{field}.tool_calls[{index}]"
        )
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": function["name"],
                "input": arguments,
            }
        )
    return blocks


def _tool(tool: JSON) -> JSON:
    function = tool["function"]
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    translated = {"name": function["name"], "input_schema": schema}
    if function.get("description"):
        translated["description"] = function["description"]
    return translated


def _tool_choice(choice: Any) -> JSON:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": choice["function"]["name"]}
    raise InvalidRequest(
        "tool_choice must be auto, none, required or a named function",
        field="tool_choice",
    )


def _schema_tool(spec: JSON) -> JSON:
    description = spec.get("description") or "Give the final answer in this form."
    return {
        "name": STRUCTURED_TOOL,
        "description": description,
        "input_schema": spec.get("schema") or {"type": "object"},
    }


def _structured_choice(choice: JSON, other_tools: bool) -> JSON:
    if not other_tools or choice["type"] == "none":
        return {"type": "tool", "name": STRUCTURED_TOOL}
    if choice["type"] == "tool":
        return choice
    return {"type": "any"}


def _sampling(request: JSON) -> JSON:
    fields: JSON = {}
    for name in ("temperature", "top_p"):
        if request.get(name) is not None:
            fields[name] = request[name]
    stop = request.get("stop")
    if stop:
        fields["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    return fields


def _check_thinking_conflicts(request: JSON, body: JSON) -> None:
    if json_schema_format(request) is not None:
        raise InvalidRequest(
            "Anthropic cannot reason and force the structured-output tool at "
            "once; drop reasoning_effort or response_format",
            field="response_format",
        )
    if body.get("tool_choice", {}).get("type") in FORCED_CHOICES:
        raise InvalidRequest(
            "Anthropic cannot reason while a tool is forced; use tool_choice "
            "auto or drop reasoning_effort",
            field="tool_choice",
        )
    if body.get("temperature") not in (None, 1):
        raise InvalidRequest(
            "Anthropic reasons only at temperature 1; drop temperature or "
            "reasoning_effort",
            field="temperature",
        )
