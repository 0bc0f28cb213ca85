"""Translate an OpenAI chat request into a Gemini ``generateContent`` request.

Rules beyond a one-to-one mapping:

- system and developer messages join ``systemInstruction``; assistant turns
  have role ``model``; tool results become ``functionResponse`` parts of a
  user turn (consecutive ones merged, as Gemini wants every response of a
  call turn together). Gemini gives function calls no ids: the adapter
  makes stable ones (``call_`` + a hash of name, arguments and position) and
  maps each tool result back to its function name through the assistant
  message that holds its ``tool_call_id``.
- ``tool_choice`` required is mode ``ANY``; a named function is ``ANY``
  restricted by ``allowedFunctionNames``. Gemini cannot turn parallel calls
  off, so ``parallel_tool_calls: false`` is refused.
- ``response_format`` json_schema is native: ``responseMimeType``
  application/json with ``responseJsonSchema``.
- ``reasoning_effort`` becomes ``thinkingConfig.thinkingBudget`` per
  ``THINKING_BUDGETS`` with ``includeThoughts``; ``thoughtSignature`` values
  kept in ``reasoning_blocks`` (``{"type": "thought_signature",
  "signature", "tool_call_id"}``) go back on the part they came with.
- images must be base64 data URLs (``inlineData``); URLs are refused.
"""

from __future__ import annotations

import hashlib
import json
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

THINKING_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def call_id(name: str, arguments: Any, position: int) -> str:
    """Return the stable id given to a Gemini function call."""
    seed = json.dumps([name, arguments, position], sort_keys=True)
    return "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


def generate_body(request: JSON) -> JSON:
    """Build the ``generateContent`` body for the request."""
    system, contents = _contents(request["messages"])
    body: JSON = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    body.update(_tools(request))
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    return body


def _contents(messages: list[JSON]) -> tuple[str, list[JSON]]:
    names = _call_names(messages)
    system: list[str] = []
    contents: list[JSON] = []
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        if message.get("role") in ("system", "developer"):
            system.append(text_of(message.get("content"), f"{field}.content"))
            continue
        role, parts = _parts(message, field, names)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return "\n\n".join(system), contents


def _call_names(messages: list[JSON]) -> dict[str, str]:
    return {
        call["id"]: call["function"]["name"]
        for message in messages
        for call in message.get("tool_calls") or []
    }


def _parts(message: JSON, field: str, names: dict[str, str]) -> tuple[str, list[JSON]]:
    role = message.get("role")
    if role == "user":
        return "user", _user_parts(message.get("content"), field)
    if role == "assistant":
        return "model", _model_parts(message, field)
    if role == "tool":
        return "user", [_function_response(message, field, names)]
    raise InvalidRequest(
        f"role must be system, developer, user, assistant or tool, got {role!r}",
        field=f"{field}.role",
    )


def _user_parts(content: Any, field: str) -> list[JSON]:
    if isinstance(content, str):
        return [{"text": content}]
    parts = []
    for index, part in enumerate(content or []):
        part_field = f"{field}.content[{index}]"
        if part.get("type") == "text":
            parts.append({"text": part["text"]})
        elif part.get("type") == "image_url":
            parts.append(_image(part["image_url"]["url"], part_field))
        else:
            raise InvalidRequest(
                f"content part type {part.get('type')!r} cannot be sent to Gemini",
                field=f"{part_field}.type",
            )
    return parts


def _image(url: str, field: str) -> JSON:
    inline = data_url(url, field)
    if inline is None:
        raise InvalidRequest(
            "Gemini takes images inline only: send a base64 data URL",
            field=f"{field}.image_url.url",
        )
    return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}


def _model_parts(message: JSON, field: str) -> list[JSON]:
    signatures = {
        block.get("tool_call_id"): block["signature"]
        for block in message.get("reasoning_blocks") or []
        if block.get("type") == "thought_signature"
    }
    parts: list[JSON] = []
    text = text_of(message.get("content"), f"{field}.content")
    if text:
        parts.append(_signed({"text": text}, signatures.get(None)))
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        args = call_arguments(function.get("arguments"), f"{field}.tool_calls[{index}]")
        part = {"functionCall": {"name": function["name"], "args": args}}
        parts.append(_signed(part, signatures.get(call["id"])))
    return parts or [{"text": ""}]


def _signed(part: JSON, signature: str | None) -> JSON:
    return {**part, "thoughtSignature": signature} if signature else part


def _function_response(message: JSON, field: str, names: dict[str, str]) -> JSON:
    name = names.get(message.get("tool_call_id", ""))
    if name is None:
        raise InvalidRequest(
            "tool_call_id matches no tool call of an earlier assistant message",
            field=f"{field}.tool_call_id",
        )
    text = text_of(message.get("content"), f"{field}.content")
    try:
        response = json.loads(text)
    except ValueError:
        response = None
    if not isinstance(response, dict):
        response = {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


def _tools(request: JSON) -> JSON:
    tools = request.get("tools") or []
    if not tools:
        return {}
    if request.get("parallel_tool_calls") is False:
        raise InvalidRequest(
            "Gemini cannot turn parallel function calls off; drop parallel_tool_calls",
            field="parallel_tool_calls",
        )
    declarations = [_declaration(tool["function"]) for tool in tools]
    config = _calling_config(request.get("tool_choice"))
    return {
        "tools": [{"functionDeclarations": declarations}],
        "toolConfig": {"functionCallingConfig": config},
    }


def _declaration(function: JSON) -> JSON:
    declaration: JSON = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    if function.get("parameters"):
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _calling_config(choice: Any) -> JSON:
    if choice is None or (isinstance(choice, str) and choice in MODES):
        return {"mode": MODES[choice or "auto"]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    raise InvalidRequest(
        "tool_choice must be auto, none, required or a named function",
        field="tool_choice",
    )


def _generation_config(request: JSON) -> JSON:
    config: JSON = {}
    limit = max_output_tokens(request)
    if limit is not None:
        config["maxOutputTokens"] = limit
    for name, gemini_name in (("temperature", "temperature"), ("top_p", "topP")):
        if request.get(name) is not None:
            config[gemini_name] = request[name]
    stop = request.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    spec = json_schema_format(request)
    if spec is not None:
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = spec.get("schema") or {"type": "object"}
    budget = effort_budget(request, THINKING_BUDGETS)
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    return config
