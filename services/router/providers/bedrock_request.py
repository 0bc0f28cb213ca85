"""Translate an OpenAI chat request into a Bedrock Converse request.

Converse carries Claude-style content, so the request is first translated
by ``anthropic_request`` (same system, merging, tool, structured-output and
thinking rules) and then reshaped block by block. Bedrock specifics:

- images must be inline (base64 data URLs); Converse takes no image URLs.
- ``tool_choice`` none has no Converse form: the tools are left out, which
  is refused when the conversation already holds tool calls (Bedrock needs
  the tool configuration then).
- reasoning is Claude's ``thinking``, sent in ``additionalModelRequestFields``;
  reasoning blocks go back as ``reasoningContent`` (redacted ones as bytes).
"""

from __future__ import annotations

from typing import Any

from shared.errors import InvalidRequest

from .anthropic_request import messages_body
from .base import JSON


def converse_body(request: JSON) -> JSON:
    """Build the Converse (and ConverseStream) body for the request."""
    claude = messages_body(request, provider_model="")
    body: JSON = {
        "messages": [_turn(turn) for turn in claude["messages"]],
        "inferenceConfig": _inference(claude),
    }
    if claude.get("system"):
        body["system"] = [{"text": claude["system"]}]
    tool_config = _tool_config(claude)
    if tool_config:
        body["toolConfig"] = tool_config
    if claude.get("thinking"):
        body["additionalModelRequestFields"] = {"thinking": claude["thinking"]}
    return body


def _turn(turn: JSON) -> JSON:
    return {"role": turn["role"], "content": [_block(b) for b in turn["content"]]}


def _block(block: JSON) -> JSON:
    kind = block["type"]
    if kind == "text":
        return {"text": block["text"]}
    if kind == "image":
        return _image(block["source"])
    if kind == "tool_use":
        use = {"toolUseId": block["id"], "name": block["name"], "input": block["input"]}
        return {"toolUse": use}
    if kind == "tool_result":
        content = [{"text": block["content"]}]
        return {"toolResult": {"toolUseId": block["tool_use_id"], "content": content}}
    if kind == "thinking":
        text = {"text": block["thinking"], "signature": block["signature"]}
        return {"reasoningContent": {"reasoningText": text}}
    return {"reasoningContent": {"redactedContent": block["data"]}}


def _image(source: JSON) -> JSON:
    if source["type"] != "base64":
        raise InvalidRequest(
            "Bedrock takes images inline only: send a base64 data URL",
            field="messages.content.image_url",
        )
    image_format = source["media_type"].removeprefix("image/")
    return {"image": {"format": image_format, "source": {"bytes": source["data"]}}}


def _inference(claude: JSON) -> JSON:
    config: JSON = {"maxTokens": claude["max_tokens"]}
    names = {
        "temperature": "temperature",
        "top_p": "topP",
        "stop_sequences": "stopSequences",
    }
    for claude_name, converse_name in names.items():
        if claude_name in claude:
            config[converse_name] = claude[claude_name]
    return config


def _tool_config(claude: JSON) -> JSON | None:
    if not claude.get("tools"):
        return None
    choice = claude["tool_choice"]
    if choice["type"] == "none":
        _refuse_if_tools_used(claude)
        return None
    if choice.get("disable_parallel_tool_use"):
        raise InvalidRequest(
            "Bedrock Converse cannot turn parallel tool calls off; drop "
            "parallel_tool_calls",
            field="parallel_tool_calls",
        )
    tools = [{"toolSpec": _tool_spec(tool)} for tool in claude["tools"]]
    return {"tools": tools, "toolChoice": _choice(choice)}


def _refuse_if_tools_used(claude: JSON) -> None:
    for turn in claude["messages"]:
        if any(
            block["type"] in ("tool_use", "tool_result") for block in turn["content"]
        ):
            raise InvalidRequest(
                "Bedrock Converse has no tool_choice none once tools were used; "
                "use auto",
                field="tool_choice",
            )


def _tool_spec(tool: JSON) -> JSON:
    spec: dict[str, Any] = {
        "name": tool["name"],
        "inputSchema": {"json": tool["input_schema"]},
    }
    if tool.get("description"):
        spec["description"] = tool["description"]
    return spec


def _choice(choice: JSON) -> JSON:
    if choice["type"] == "tool":
        return {"tool": {"name": choice["name"]}}
    return {choice["type"]: {}}
