"""Pure-logic tests: capability detection, token estimate, Retry-After, lookup."""

from __future__ import annotations

from datetime import UTC, datetime

from services.router.providers import (
    ADAPTERS,
    ProviderSettings,
    capabilities_used,
    estimate_prompt_tokens,
)
from services.router.providers.resilience import retry_after_s

from .conftest import ANSWER_FORMAT, WEATHER_TOOL


def test_every_endpoint_api_has_an_adapter() -> None:
    assert set(ADAPTERS) == {
        "openai_chat",
        "azure_openai_chat",
        "anthropic_messages",
        "bedrock_converse",
        "gemini_generate_content",
    }


def test_a_plain_request_needs_no_capability() -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert capabilities_used(request) == set()


def test_each_feature_names_its_capability() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
    request = {
        "model": "m",
        "messages": [{"role": "user", "content": [image]}],
        "tools": [WEATHER_TOOL],
        "response_format": ANSWER_FORMAT,
        "reasoning_effort": "low",
        "stream": True,
    }
    assert capabilities_used(request) == {
        "tool_calling",
        "structured_outputs",
        "reasoning",
        "streaming",
        "vision",
    }


def test_text_response_format_and_no_reasoning_need_nothing() -> None:
    request = {
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "text"},
        "reasoning_effort": "none",
        "stream": False,
    }
    assert capabilities_used(request) == set()


def test_prompt_estimate_counts_text_tools_and_message_overhead() -> None:
    text_only = {"messages": [{"role": "user", "content": "x" * 400}]}
    with_tools = {**text_only, "tools": [WEATHER_TOOL]}

    assert estimate_prompt_tokens(text_only) == 100 + 4
    assert estimate_prompt_tokens(with_tools) > estimate_prompt_tokens(text_only)


def test_retry_after_reads_seconds_dates_and_milliseconds() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after": "Wed, 01 Jan 2025 12:00:05 GMT"}, now) == 5.0
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_settings_come_from_the_documented_variables() -> None:
    settings = ProviderSettings.from_env(
        {"BYOM_PROVIDER_TIMEOUT_S": "12", "BYOM_PROVIDER_MAX_ATTEMPTS": "2"}
    )
    assert (settings.timeout_s, settings.max_attempts) == (12.0, 2)
    assert ProviderSettings.from_env({}).timeout_s == 60.0
