"""The adapter of each endpoint api, looked up by ``Target.api``."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .anthropic_messages import AnthropicMessages
from .base import Adapter
from .bedrock_converse import BedrockConverse
from .gemini_generate_content import GeminiGenerateContent
from .openai_chat import AzureOpenAIChat, OpenAIChat
from .resilience import ProviderCaller


def build_adapters(caller: ProviderCaller | None = None) -> Mapping[str, Adapter]:
    """Return one adapter per endpoint api, sharing the caller's settings."""
    caller = caller or ProviderCaller()
    return MappingProxyType(
        {
            "openai_chat": OpenAIChat(caller),
            "azure_openai_chat": AzureOpenAIChat(caller),
            "anthropic_messages": AnthropicMessages(caller),
            "bedrock_converse": BedrockConverse(caller),
            "gemini_generate_content": GeminiGenerateContent(caller),
        }
    )
