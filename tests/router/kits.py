"""One kit per endpoint api: its fake server, source, endpoint and scripts.

The router tests run the same scenarios against every api; a kit says how
to register a model on that api's strict fake and how to script the fake's
answers (text, a tool call, a stream, an error) in its own wire format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes import anthropic, bedrock, gemini, openai
from tests.fakes.server import FakeServer, Reply

Arguments = dict[str, Any]


@dataclass(frozen=True)
class Kit:
    """How to reach and script one endpoint api's fake."""

    api: str
    provider: str
    path: str
    provider_model: str
    auth: dict[str, Any]
    fake: Callable[[], FakeServer]
    text: Callable[[str], Reply]
    tool_call: Callable[[str, str, Arguments], Reply]
    stream: Callable[[list[str], bool, float], Reply]
    error: Callable[[int, str, dict[str, str]], Reply]

    def __str__(self) -> str:
        return self.api


def _openai_stream(pieces: list[str], usage: bool, delay_s: float) -> Reply:
    return openai.text_stream(pieces, with_usage=usage, delay_s=delay_s)


def _openai_error(status: int, message: str, headers: dict[str, str]) -> Reply:
    return openai.error(status, message, **headers)


def _openai_tool_call(id_: str, name: str, arguments: Arguments) -> Reply:
    return openai.tool_calls((id_, name, arguments))


OPENAI = Kit(
    api="openai_chat",
    provider="openai",
    path="/v1/chat/completions",
    provider_model="gpt-4o-mini",
    auth={"type": "bearer", "secret": openai.API_KEY},
    fake=openai.FakeOpenAI,
    text=openai.text,
    tool_call=_openai_tool_call,
    stream=_openai_stream,
    error=_openai_error,
)

AZURE = Kit(
    api="azure_openai_chat",
    provider="azure_openai",
    path="/openai/deployments/{model}/chat/completions",
    provider_model="house-deployment",
    auth={"type": "api_key", "header": "api-key", "secret": openai.API_KEY},
    fake=lambda: openai.FakeOpenAI(azure=True),
    text=openai.text,
    tool_call=_openai_tool_call,
    stream=_openai_stream,
    error=_openai_error,
)

ANTHROPIC = Kit(
    api="anthropic_messages",
    provider="anthropic",
    path="/v1/messages",
    provider_model="claude-sonnet-4-5",
    auth={"type": "api_key", "header": "x-api-key", "secret": anthropic.API_KEY},
    fake=anthropic.FakeAnthropic,
    text=lambda text: anthropic.message([anthropic.text_block(text)]),
    tool_call=lambda id_, name, arguments: anthropic.message(
        [anthropic.tool_use(id_, name, arguments)], "tool_use"
    ),
    stream=lambda pieces, usage, delay_s: anthropic.stream(
        [anthropic.text_block(piece) for piece in pieces],
        with_usage=usage,
        delay_s=delay_s,
    ),
    error=lambda status, message, headers: anthropic.error(status, message, **headers),
)


def _bedrock_error(status: int, message: str, headers: dict[str, str]) -> Reply:
    kind = "ThrottlingException" if status == 429 else "InternalServerException"
    return bedrock.error(status, kind, message, **headers)


BEDROCK = Kit(
    api="bedrock_converse",
    provider="bedrock",
    path="/model/{model}/converse",
    provider_model="anthropic.claude-sonnet-4-5-v1:0",
    auth=bedrock.AUTH,
    fake=bedrock.FakeBedrock,
    text=lambda text: bedrock.reply([{"text": text}]),
    tool_call=lambda id_, name, arguments: bedrock.reply(
        [bedrock.tool_use(id_, name, arguments)], "tool_use"
    ),
    stream=lambda pieces, usage, delay_s: bedrock.stream(
        [{"text": piece} for piece in pieces], with_usage=usage, delay_s=delay_s
    ),
    error=_bedrock_error,
)

GEMINI = Kit(
    api="gemini_generate_content",
    provider="gemini",
    path="/v1beta/models/{model}:generateContent",
    provider_model="gemini-2.5-flash",
    auth={"type": "api_key", "header": "x-goog-api-key", "secret": gemini.API_KEY},
    fake=gemini.FakeGemini,
    text=lambda text: gemini.reply([{"text": text}]),
    tool_call=lambda _id, name, arguments: gemini.reply([gemini.call(name, arguments)]),
    stream=lambda pieces, usage, delay_s: gemini.stream(
        [{"text": piece} for piece in pieces], with_usage=usage, delay_s=delay_s
    ),
    error=lambda status, message, headers: gemini.error(status, message, **headers),
)

KITS = (OPENAI, AZURE, ANTHROPIC, BEDROCK, GEMINI)
