"""Assemble the registry service: store, outbox publisher, endpoints."""

from __future__ import annotations

from services.registry.handlers import RegistryHandlers
from services.registry.publisher import EventPublisher
from services.registry.store import RegistryStore
from shared.secrets import SecretBox
from shared.service import Service
from shared.settings import Settings

OPERATIONS = (
    "source.create",
    "source.get",
    "source.list",
    "model.register",
    "model.get",
    "model.list",
    "access.set",
    "access.get",
)


def build(settings: Settings) -> Service:
    service = Service("registry", settings)
    store = RegistryStore(settings.data_dir / "registry.sqlite3")
    publisher = EventPublisher(store, lambda: service.js, service.subjects)
    service.components += [store, publisher]
    service.registry_version = lambda: store.last_version

    handlers = RegistryHandlers(store, publisher, SecretBox(settings.secret_key))
    for operation in OPERATIONS:
        method = getattr(handlers, operation.replace(".", "_"))
        service.serve(service.subjects.registry(operation), method)
    return service
