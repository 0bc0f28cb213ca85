"""The two endpoint apis that speak OpenAI's wire, as their golden tests reach them.

Each ``Api`` says how a source of that api is configured against the fake and
what the fake must then receive: route, query, key header and body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from services.router.providers import Target
from services.router.providers.openai_chat import AzureOpenAIChat, OpenAIChat
from tests.fakes import openai as fake

USER = {"role": "user", "content": "Weather in Paris?"}


@dataclass(frozen=True)
class Api:
    """An endpoint api as a source configures it, and what its fake must see."""

    name: str
    adapter: type[OpenAIChat]
    path: str
    provider_model: str
    auth: Mapping[str, Any]
    route: str
    query: Mapping[str, str]
    key: tuple[str, str]
    azure: bool

    def target(self, server: fake.FakeOpenAI, **auth: Any) -> Target:
        """Point a source of this api at the fake."""
        auth = auth or self.auth
        return Target(self.name, server.base_url, self.path, self.provider_model, auth)

    def at_version(self, version: str) -> Api:
        """Return this api with the source's own ``api-version`` in its path."""
        path = f"{self.path}?api-version={version}"
        return replace(self, path=path, query={"api-version": version})

    def sent(self, server: fake.FakeOpenAI, index: int = 0) -> dict[str, Any]:
        """Return a body the fake got, once its route and key are checked."""
        request = server.requests[index]
        header, value = self.key
        assert (request.path, request.query) == (self.route, self.query)
        assert request.headers[header] == value
        return dict(request.json)

    def body(self, *messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Return the body the provider should get for ``ask(...)``."""
        body = {"messages": list(messages or [USER]), **fields, "stream": False}
        # Azure takes the deployment from the path, so its body names no model.
        return body if self.azure else {"model": self.provider_model, **body}


OPENAI = Api(
    name="openai_chat",
    adapter=OpenAIChat,
    path="/v1/chat/completions",
    provider_model="gpt-4o",
    auth={"type": "bearer", "secret": fake.API_KEY},
    route="/v1/chat/completions",
    query={},
    key=("authorization", f"Bearer {fake.API_KEY}"),
    azure=False,
)
AZURE = Api(
    name="azure_openai_chat",
    adapter=AzureOpenAIChat,
    path="/openai/deployments/{model}/chat/completions",
    provider_model="my-deploy",
    auth={"type": "api_key", "header": "api-key", "secret": fake.API_KEY},
    route="/openai/deployments/my-deploy/chat/completions",
    query={"api-version": "2024-10-21"},
    key=("api-key", fake.API_KEY),
    azure=True,
)
