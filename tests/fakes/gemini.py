"""A strict fake of the Gemini API's generateContent and streamGenerateContent.

It checks the API key header, non-empty contents with roles user/model,
one data field per part, function responses answering the previous call
turn one for one, tool and generation config, and that thought signatures
it issued come back on their function calls.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .server import FakeServer, Recorded, Reply, serve_forever

API_KEY = "AIza-fake-gemini-key"
PATH = re.compile(r"^/v1beta/models/[^/:]+:(generateContent|streamGenerateContent)$")
FIELDS = {"contents", "systemInstruction", "tools", "toolConfig",
          "generationConfig", "safetySettings", "cachedContent"}  # fmt: skip
DATA_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}
FIXED_TEXT = "Hello from the fake provider."
STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip


def error(status: int, message: str, **headers: str) -> Reply:
    """Answer with Google's error shape."""
    body = {"error": {"code": status, "message": message,
                      "status": STATUS.get(status, "UNKNOWN")}}  # fmt: skip
    return Reply.of_json(body, status, headers)


def call(name: str, args: dict[str, Any], signature: str = "") -> dict[str, Any]:
    """A functionCall part, optionally signed."""
    part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
    if signature:
        part["thoughtSignature"] = signature
    return part


def thought(text: str) -> dict[str, Any]:
    """A thought summary part."""
    return {"text": text, "thought": True}


def response(
    parts: list[dict[str, Any]], finish: str = "STOP", with_usage: bool = True
) -> dict[str, Any]:
    """Build one GenerateContentResponse."""
    body: dict[str, Any] = {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": finish,
             "index": 0}
        ],
        "modelVersion": "gemini-fake",
    }  # fmt: skip
    if with_usage:
        body["usageMetadata"] = {"promptTokenCount": 12, "candidatesTokenCount": 8,
                                 "thoughtsTokenCount": 3, "totalTokenCount": 23,
                                 "cachedContentTokenCount": 2}  # fmt: skip
    return body


def reply(parts: list[dict[str, Any]], finish: str = "STOP") -> Reply:
    """Answer with one response."""
    return Reply.of_json(response(parts, finish))


def stream(
    parts: list[dict[str, Any]], with_usage: bool = True, delay_s: float = 0.0
) -> Reply:
    """Stream one part per SSE event; the last carries finishReason and usage."""
    events = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        body = response([part], "STOP" if last else "", with_usage and last)
        if not last:
            del body["candidates"][0]["finishReason"]
        events.append(b"data: %s\r\n\r\n" % json.dumps(body).encode())
    return Reply.of_stream(events, "text/event-stream", delay_s)


class FakeGemini(FakeServer):
    """Validate like the Gemini API."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        # Signatures issued with a function call, by function name.
        self.signed: dict[str, str] = {}

    def remember(self, *parts: dict[str, Any]) -> None:
        """Record signatures the fake is scripted to give with function calls."""
        for part in parts:
            if "functionCall" in part and part.get("thoughtSignature"):
                self.signed[part["functionCall"]["name"]] = part["thoughtSignature"]

    def default_reply(self, request: Recorded) -> Reply:
        """Answer with fixed text."""
        if request.path.endswith(":streamGenerateContent"):
            return stream([{"text": FIXED_TEXT}])
        return reply([{"text": FIXED_TEXT}])

    def validate(self, request: Recorded) -> Reply | None:
        """Reject what the Gemini API would reject."""
        if request.method != "POST" or not PATH.match(request.path):
            return error(404, f"Method not found: {request.path}")
        if request.headers.get("x-goog-api-key") != API_KEY:
            return error(400, "API key not valid. Please pass a valid API key.")
        streaming = request.path.endswith(":streamGenerateContent")
        if streaming and request.query.get("alt") != "sse":
            return error(400, "this fake streams only with alt=sse")
        try:
            body = json.loads(request.body)
        except ValueError:
            return error(400, "Invalid JSON payload received.")
        problem = _check(body, self.signed)
        return error(400, problem) if problem else None


def _check(body: dict[str, Any], signed: dict[str, str]) -> str | None:
    extra = sorted(set(body) - FIELDS)
    if extra:
        return f'Invalid JSON payload received. Unknown name "{extra[0]}"'
    if not body.get("contents"):
        return "* GenerateContentRequest.contents: contents is not specified"
    return (
        _check_tools(body)
        or _check_config(body.get("generationConfig") or {})
        or _check_contents(body["contents"], signed)
    )


def _check_tools(body: dict[str, Any]) -> str | None:
    names = {d["name"] for tool in body.get("tools") or []
             for d in tool.get("functionDeclarations") or []}  # fmt: skip
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if config.get("mode", "AUTO") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        return f"Invalid value at 'function_calling_config.mode' ({config['mode']})"
    allowed = config.get("allowedFunctionNames")
    if allowed and (config.get("mode") != "ANY" or set(allowed) - names):
        return "allowed_function_names must name declared functions, with mode ANY"
    return None


def _check_config(config: dict[str, Any]) -> str | None:
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if schema and config.get("responseMimeType") != "application/json":
        return "response_mime_type must be application/json when a schema is set"
    budget = (config.get("thinkingConfig") or {}).get("thinkingBudget", 0)
    if not isinstance(budget, int) or budget > 32768:
        return "thinking_budget is out of range"
    return None


def _check_contents(
    contents: list[dict[str, Any]], signed: dict[str, str]
) -> str | None:
    calls = 0
    for index, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return f"Please use a valid role: user, model. ({content.get('role')})"
        parts = content.get("parts") or []
        if not parts:
            return f"contents[{index}].parts must not be empty"
        for part in parts:
            problem = _check_part(index, part, signed)
            if problem:
                return problem
        responses = sum("functionResponse" in part for part in parts)
        if responses and responses != calls:
            return ("Please ensure that the number of function response parts is "
                    "equal to the number of function call parts of the function "
                    "call turn.")  # fmt: skip
        calls = sum("functionCall" in part for part in parts)
    return None


def _check_part(index: int, part: dict[str, Any], signed: dict[str, str]) -> str | None:
    data = set(part) & DATA_FIELDS
    if len(data) != 1 or set(part) - DATA_FIELDS - {"thought", "thoughtSignature"}:
        return f"contents[{index}]: a part holds one data field, got {sorted(part)}"
    call = part.get("functionCall")
    if (
        call
        and call["name"] in signed
        and part.get("thoughtSignature") != signed[call["name"]]
    ):
        return (f"Function call is missing a thought_signature in functionCall parts "
                f"(contents[{index}])")  # fmt: skip
    response = part.get("functionResponse")
    if response and not isinstance(response.get("response"), dict):
        return f"contents[{index}]: functionResponse.response must be an object"
    return None


if __name__ == "__main__":
    serve_forever(FakeGemini(), "A strict fake Gemini API server.")
