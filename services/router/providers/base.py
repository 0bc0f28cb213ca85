"""The protocol every provider adapter implements, and what it is called with.

The router resolves a registered model's endpoint into a ``Target`` and looks
its adapter up in ``ADAPTERS`` by ``Target.api``. Requests and replies are
OpenAI Chat Completions shapes; each adapter translates to its wire format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to call one endpoint of a registered model."""

    api: str
    base_url: str
    path: str
    provider_model: str
    auth: Mapping[str, Any]
    port: int | None = None


class Adapter(Protocol):
    """Translate OpenAI chat requests to one provider api and its answers back."""

    async def complete(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> JSON:
        """Return an OpenAI ``chat.completion`` for the request."""
        ...

    def stream(
        self, client: httpx.AsyncClient, target: Target, request: JSON
    ) -> AsyncIterator[JSON]:
        """Yield OpenAI ``chat.completion.chunk`` dicts, usage last if reported."""
        ...
