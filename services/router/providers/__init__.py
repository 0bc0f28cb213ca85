"""Provider adapters of the router: one per endpoint api, behind ``Adapter``.

The router builds ``build_adapters(ProviderCaller(settings))`` once at start,
with provider settings taken from its service settings
(``services/router/app.py``; ``ADAPTERS`` uses the defaults), and picks an
adapter with ``adapters[target.api]``.
"""

from __future__ import annotations

from .base import Adapter, Target
from .capabilities import capabilities_used, estimate_prompt_tokens
from .lookup import build_adapters
from .resilience import ProviderCaller, ProviderSettings

ADAPTERS = build_adapters()

__all__ = [
    "ADAPTERS",
    "Adapter",
    "ProviderCaller",
    "ProviderSettings",
    "Target",
    "build_adapters",
    "capabilities_used",
    "estimate_prompt_tokens",
]
