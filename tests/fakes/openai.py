"""A strict fake of OpenAI's (and Azure OpenAI's) Chat Completions endpoint.

Without a script it answers instantly with a fixed completion (12 prompt and
8 completion tokens), which the benchmark relies on: ``python -m
tests.fakes.openai --port N``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from .server import FakeServer, Recorded, Reply, serve_forever

API_KEY = "sk-fake-openai-key"
ROLES = {"system", "developer", "user", "assistant", "tool"}
MESSAGE_FIELDS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio"},
    "tool": {"role", "content", "tool_call_id"},
}
PARAMETERS = {
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls",
    "response_format", "reasoning_effort", "max_completion_tokens", "max_tokens",
    "temperature", "top_p", "stream", "stream_options", "stop", "n", "seed",
    "user", "metadata", "store", "logprobs", "top_logprobs", "presence_penalty",
    "frequency_penalty", "logit_bias", "service_tier", "prediction",
}  # fmt: skip
AZURE_PATH = re.compile(r"^/openai/deployments/[^/]+/chat/completions$")
AZURE_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
# Azure answers 400 to a feature the request's api-version predates; these are
# the first versions that know each one (their dates compare as strings).
REASONING_SINCE = "2024-12-01"
JSON_SCHEMA_SINCE = "2024-08-01"
FIXED_TEXT = "Hello from the fake provider."


def error(status: int, message: str, param: str | None = None, **headers: str) -> Reply:
    """Answer with OpenAI's error shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return Reply.of_json(body, status, headers)


def completion(message: dict[str, Any], finish: str = "stop", **usage: int) -> Reply:
    """Answer with a chat.completion holding the message."""
    return Reply.of_json(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "fake-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(**usage),
        }
    )


def text(content: str, **usage: int) -> Reply:
    """Answer with plain assistant text."""
    return completion({"role": "assistant", "content": content}, "stop", **usage)


def tool_calls(*calls: tuple[str, str, dict[str, Any]], **usage: int) -> Reply:
    """Answer with tool calls (id, name, arguments)."""
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [_call(i, n, a) for i, n, a in calls],
    }
    return completion(message, "tool_calls", **usage)


def _call(id_: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": id_, "type": "function", "function": function}


def stream(chunks: list[dict[str, Any]], delay_s: float = 0.0) -> Reply:
    """Answer with SSE ``data:`` lines and ``[DONE]``."""
    events = [b"data: %s\n\n" % json.dumps(chunk).encode() for chunk in chunks]
    return Reply.of_stream([*events, b"data: [DONE]\n\n"], "text/event-stream", delay_s)


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """Build one streamed chunk."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {**_chunk_head(), "choices": [choice]}


def usage_chunk(**usage: int) -> dict[str, Any]:
    """Build the final usage-only chunk."""
    return {**_chunk_head(), "choices": [], "usage": _usage(**usage)}


def text_stream(
    pieces: list[str], with_usage: bool = True, delay_s: float = 0.0
) -> Reply:
    """Stream text pieces, then finish, then usage when asked."""
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in pieces]
    chunks.append(chunk({}, "stop"))
    if with_usage:
        chunks.append(usage_chunk())
    return stream(chunks, delay_s)


class FakeOpenAI(FakeServer):
    """Validate like OpenAI: auth, path, parameters, roles, tool-call pairing.

    As Azure it also wants a deployment path, an ``api-version`` and the
    ``api-key`` header, and rejects features newer than that api-version.
    """

    def __init__(self, port: int = 0, *, azure: bool = False) -> None:
        super().__init__(port)
        self.azure = azure
        self._fixed = text(FIXED_TEXT)

    def default_reply(self, request: Recorded) -> Reply:
        """Answer instantly with the fixed completion (or its stream)."""
        if request.json.get("stream"):
            include = (request.json.get("stream_options") or {}).get("include_usage")
            return text_stream(["Hello", " from the fake", " provider."], bool(include))
        return self._fixed

    def validate(self, request: Recorded) -> Reply | None:
        """Reject what OpenAI would reject."""
        problem = self._route(request) or self._auth(request)
        if problem:
            return problem
        try:
            body = json.loads(request.body)
        except ValueError:
            return error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return error(400, "The body must be a JSON object.")
        problem = _check_body(body, self.azure)
        if self.azure:
            return problem or _check_api_version(body, request.query["api-version"])
        return problem

    def _route(self, request: Recorded) -> Reply | None:
        if request.method != "POST":
            return error(405, "Method not allowed.")
        if self.azure:
            return _azure_route(request)
        if request.path != "/v1/chat/completions":
            return error(404, f"Invalid URL (POST {request.path})")
        return None

    def _auth(self, request: Recorded) -> Reply | None:
        if self.azure:
            key = request.headers.get("api-key", "")
        else:
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if key != API_KEY:
            return error(401, f"Incorrect API key provided: {key}.")
        return None


def _azure_route(request: Recorded) -> Reply | None:
    version = request.query.get("api-version")
    if version is None:
        return error(404, "Missing api-version query parameter.")
    if not AZURE_PATH.match(request.path) or not AZURE_VERSION.match(version):
        return error(404, "Resource not found")
    return None


def _check_body(body: dict[str, Any], azure: bool) -> Reply | None:
    unknown = sorted(set(body) - PARAMETERS)
    if unknown:
        return error(400, f"Unrecognized request argument supplied: {unknown[0]}")
    if not azure and not body.get("model"):
        return error(400, "you must provide a model parameter", "model")
    if body.get("stream_options") and not body.get("stream"):
        return error(400, "stream_options is only allowed when stream is true")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error(400, "messages must be a non-empty array", "messages")
    return _check_messages(messages) or _check_tools(body)


def _check_messages(messages: list[dict[str, Any]]) -> Reply | None:
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ROLES:
            return error(400, f"Invalid value: '{role}'.", f"messages[{i}].role")
        extra = sorted(set(message) - MESSAGE_FIELDS[str(role)])
        if extra:
            return error(400, f"Unrecognized field: {extra[0]}", f"messages[{i}]")
        if role == "tool":
            if message.get("tool_call_id") not in pending:
                return error(400, "tool message without a preceding tool call",
                             f"messages[{i}].tool_call_id")  # fmt: skip
            pending.discard(message["tool_call_id"])
            continue
        if pending:
            return error(400, "An assistant message with 'tool_calls' must be followed"
                         " by tool messages responding to each 'tool_call_id'.",
                         f"messages[{i}]")  # fmt: skip
        pending = {call["id"] for call in message.get("tool_calls") or []}
    return None


def _check_tools(body: dict[str, Any]) -> Reply | None:
    names = {tool["function"]["name"] for tool in body.get("tools") or []}
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice["function"]["name"] not in names:
        return error(400, "tool_choice names a function not in tools", "tool_choice")
    if choice in ("required",) and not names:
        return error(400, "tool_choice required needs tools", "tool_choice")
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        if not spec.get("name") or "schema" not in spec:
            return error(400, "json_schema needs name and schema", "response_format")
    return None


def _check_api_version(body: dict[str, Any], version: str) -> Reply | None:
    date = version[:10]
    if "reasoning_effort" in body and date < REASONING_SINCE:
        return error(400, "Unknown parameter: 'reasoning_effort'.", "reasoning_effort")
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema" and date < JSON_SCHEMA_SINCE:
        return error(400, "Invalid value: 'json_schema'. Supported values are:"
                     " 'json_object' and 'text'.", "response_format.type")  # fmt: skip
    return None


def _usage(prompt: int = 12, completion: int = 8, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def _chunk_head() -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "fake-model",
    }


if __name__ == "__main__":
    serve_forever(FakeOpenAI(), "A strict fake OpenAI Chat Completions server.")
