"""A strict fake of Amazon Bedrock's Converse and ConverseStream APIs.

It re-computes every request's Signature Version 4 with botocore from the
known test credentials and rejects a mismatch, then validates the body as
Converse does. Streams are framed in AWS event-stream binary messages.
"""

from __future__ import annotations

import binascii
import json
import re
import struct
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .server import FakeServer, Recorded, Reply, serve_forever

ACCESS_KEY_ID = "AKIDFAKEFAKEFAKE"
SECRET = "fake/Secret+Access/Key0123456789abcdefghij"
REGION = "us-east-1"
AUTH = {"type": "aws_sigv4", "region": REGION, "access_key_id": ACCESS_KEY_ID,
        "secret": SECRET}  # fmt: skip
PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)$")
FIELDS = {"messages", "system", "inferenceConfig", "toolConfig",
          "additionalModelRequestFields", "guardrailConfig"}  # fmt: skip
BLOCK_KEYS = {"text", "image", "toolUse", "toolResult", "reasoningContent", "document"}
FIXED_TEXT = "Hello from the fake provider."


def error(status: int, kind: str, message: str, **headers: str) -> Reply:
    """Answer with Bedrock's error shape."""
    return Reply.of_json(
        {"message": message}, status, {"x-amzn-errortype": kind, **headers}
    )


def reply(blocks: list[dict[str, Any]], stop: str = "end_turn", **usage: int) -> Reply:
    """Answer with a Converse reply."""
    return Reply.of_json(
        {
            "output": {"message": {"role": "assistant", "content": blocks}},
            "stopReason": stop,
            "usage": _usage(**usage),
            "metrics": {"latencyMs": 5},
        }
    )


def tool_use(id_: str, name: str, input_: dict[str, Any]) -> dict[str, Any]:
    """A toolUse block."""
    return {"toolUse": {"toolUseId": id_, "name": name, "input": input_}}


def reasoning(text: str, signature: str) -> dict[str, Any]:
    """A signed reasoningContent block."""
    return {
        "reasoningContent": {"reasoningText": {"text": text, "signature": signature}}
    }


def stream(
    blocks: list[dict[str, Any]],
    stop: str = "end_turn",
    with_usage: bool = True,
    delay_s: float = 0.0,
    exception: str | None = None,
) -> Reply:
    """Stream blocks as ConverseStream events in event-stream framing."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(blocks):
        events += _block_events(index, block)
    events.append(("messageStop", {"stopReason": stop}))
    if with_usage:
        events.append(("metadata", {"usage": _usage(), "metrics": {"latencyMs": 5}}))
    frames = [frame(name, payload) for name, payload in events]
    if exception:
        frames.insert(-1, frame(exception, {"message": "slow down"}, "exception"))
    return Reply.of_stream(frames, "application/vnd.amazon.eventstream", delay_s)


def frame(name: str, payload: dict[str, Any], kind: str = "event") -> bytes:
    """Encode one event-stream message (prelude, headers, payload, CRCs)."""
    type_header = ":exception-type" if kind == "exception" else ":event-type"
    headers = b"".join(
        _header(key, value)
        for key, value in ((type_header, name), (":content-type", "application/json"),
                           (":message-type", kind))
    )  # fmt: skip
    body = json.dumps({**payload, "p": "abcdefgh"}).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack(">B", len(raw_name)) + raw_name
        + struct.pack(">BH", 7, len(raw_value)) + raw_value
    )  # fmt: skip


def _block_events(
    index: int, block: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    at = {"contentBlockIndex": index}
    if "toolUse" in block:
        use = block["toolUse"]
        start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
        raw = json.dumps(use["input"])
        deltas = [{"toolUse": {"input": raw[:5]}}, {"toolUse": {"input": raw[5:]}}]
        events = [("contentBlockStart", {**at, "start": start})]
    elif "reasoningContent" in block:
        text = block["reasoningContent"]["reasoningText"]
        deltas = [{"reasoningContent": {"text": text["text"]}},
                  {"reasoningContent": {"signature": text["signature"]}}]  # fmt: skip
        events = []
    else:
        deltas = [{"text": block["text"][:3]}, {"text": block["text"][3:]}]
        events = []
    events += [("contentBlockDelta", {**at, "delta": delta}) for delta in deltas]
    return [*events, ("contentBlockStop", at)]


def _usage(input_: int = 12, output: int = 8, cache_read: int = 0) -> dict[str, int]:
    return {
        "inputTokens": input_,
        "outputTokens": output,
        "totalTokens": input_ + output,
        "cacheReadInputTokens": cache_read,
    }


class FakeBedrock(FakeServer):
    """Validate like Bedrock: SigV4 signature, path, Converse body rules."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.signed: dict[str, str] = {}

    def remember(self, *blocks: dict[str, Any]) -> None:
        """Record reasoning signatures the fake is scripted to give."""
        for block in blocks:
            if "reasoningContent" in block:
                text = block["reasoningContent"]["reasoningText"]
                self.signed[text["signature"]] = text["text"]

    def default_reply(self, request: Recorded) -> Reply:
        """Answer with fixed text."""
        if request.path.endswith("-stream"):
            return stream([{"text": FIXED_TEXT}])
        return reply([{"text": FIXED_TEXT}])

    def validate(self, request: Recorded) -> Reply | None:
        """Reject what Bedrock would reject."""
        if request.method != "POST" or not PATH.match(request.path):
            return error(404, "UnknownOperationException", "Unknown operation")
        if not signature_matches(request):
            return error(403, "InvalidSignatureException",
                         "The request signature we calculated does not match the "
                         "signature you provided.")  # fmt: skip
        try:
            body = json.loads(request.body)
        except ValueError:
            return error(400, "ValidationException", "Malformed input request")
        problem = _check(body, self.signed)
        return error(400, "ValidationException", problem) if problem else None


def signature_matches(request: Recorded) -> bool:
    """Re-compute the request's SigV4 signature with the known secret."""
    authorization = request.headers.get("authorization", "")
    found = dict(
        re.findall(r"(Credential|SignedHeaders|Signature)=([^,\s]+)", authorization)
    )
    if len(found) != 3 or not found["Credential"].startswith(ACCESS_KEY_ID + "/"):
        return False
    names = found["SignedHeaders"].split(";")
    headers = {name: request.headers.get(name, "") for name in names}
    url = f"http://{request.headers['host']}{request.raw_target}"
    rebuilt = AWSRequest(
        method=request.method, url=url, data=request.body, headers=headers
    )
    rebuilt.context["timestamp"] = request.headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET), "bedrock", REGION)
    canonical = signer.canonical_request(rebuilt)
    expected = signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
    return bool(expected == found["Signature"])


def _check(body: dict[str, Any], signed: dict[str, str]) -> str | None:
    extra = sorted(set(body) - FIELDS)
    if extra:
        return f"extraneous key [{extra[0]}] is not permitted"
    messages = body.get("messages") or []
    if not messages or messages[0].get("role") != "user":
        return "A conversation must start with a user message."
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens", 4096)
    thinking = (body.get("additionalModelRequestFields") or {}).get("thinking")
    if thinking and thinking.get("budget_tokens", 0) >= max_tokens:
        return "max_tokens must be greater than thinking.budget_tokens"
    return _check_tool_config(body) or _check_turns(messages, signed)


def _check_tool_config(body: dict[str, Any]) -> str | None:
    config = body.get("toolConfig")
    if config is None:
        used = any("toolUse" in b or "toolResult" in b
                   for m in body["messages"] for b in m["content"])  # fmt: skip
        return (
            "toolConfig field must be defined when using toolUse and toolResult"
            if used
            else None
        )
    names = {tool["toolSpec"]["name"] for tool in config.get("tools") or []}
    choice = config.get("toolChoice") or {"auto": {}}
    if len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
        return "toolChoice must be one of auto, any, tool"
    if "tool" in choice and choice["tool"].get("name") not in names:
        return "toolChoice.tool.name must name a tool in toolConfig.tools"
    return None


def _check_turns(messages: list[dict[str, Any]], signed: dict[str, str]) -> str | None:
    pending: set[str] = set()
    for index, message in enumerate(messages):
        if index and messages[index - 1]["role"] == message["role"]:
            return "A conversation must alternate between user and assistant roles."
        for block in message["content"]:
            problem = _check_block(index, block, signed)
            if problem:
                return problem
        results = {
            b["toolResult"]["toolUseId"]
            for b in message["content"]
            if "toolResult" in b
        }
        if results != pending:
            return ("The number of toolResult blocks exceeds or falls short of the "
                    "toolUse blocks of the previous turn.")  # fmt: skip
        pending = {
            b["toolUse"]["toolUseId"] for b in message["content"] if "toolUse" in b
        }
    return None


def _check_block(
    index: int, block: dict[str, Any], signed: dict[str, str]
) -> str | None:
    if len(block) != 1 or next(iter(block)) not in BLOCK_KEYS:
        return f"messages.{index}.content: unknown content block {sorted(block)}"
    text = (block.get("reasoningContent") or {}).get("reasoningText")
    if text and signed.get(text.get("signature", "")) != text.get("text"):
        return f"messages.{index}: reasoning signature is invalid"
    image = block.get("image")
    if image and image.get("format") not in ("png", "jpeg", "gif", "webp"):
        return f"messages.{index}: image format must be png, jpeg, gif or webp"
    return None


if __name__ == "__main__":
    serve_forever(FakeBedrock(), "A strict fake Bedrock Converse server.")
