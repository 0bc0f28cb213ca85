"""Assemble the registry service: store, outbox publisher, endpoints."""

from __future__ import annotations

from typing import cast

from services.registry.handlers import RegistryCore
from services.registry.models import ModelHandlers
from services.registry.policies import PolicyHandlers
from services.registry.publisher import EventPublisher
from services.registry.sources import SourceHandlers
from services.registry.store import RegistryStore
from shared.secrets import SecretBox
from shared.service import Service
from shared.settings import Settings
from shared.subjects import REGISTRY_OPERATIONS
from shared.transport import Handler

ADMIN_OPERATIONS = ("admin.reseal",)
"""Registry subjects beyond the contract's list (docs/registry.md)."""


def build(settings: Settings) -> Service:
    service = Service("registry", settings)
    store = RegistryStore(settings.data_dir / "registry.sqlite3")
    publisher = EventPublisher(store, lambda: service.js, service.subjects)
    service.components += [store, publisher]
    service.registry_version = lambda: store.last_version

    core = RegistryCore(store, publisher, SecretBox(settings.secret_key))
    groups = (SourceHandlers(core), ModelHandlers(core), PolicyHandlers(core))
    for operation in (*REGISTRY_OPERATIONS, *ADMIN_OPERATIONS):
        service.serve(service.subjects.registry(operation), _handler(groups, operation))
    return service


def _handler(groups: tuple[object, ...], operation: str) -> Handler:
    """Find the method answering ``operation`` (``source.share`` → source_share)."""
    name = operation.replace(".", "_")
    for group in groups:
        method = getattr(group, name, None)
        if method is not None:
            return cast(Handler, method)
    raise LookupError(f"no registry handler answers {operation}")
