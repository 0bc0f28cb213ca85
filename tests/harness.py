"""A whole gateway in the test's event loop, on a real NATS server.

Each ``Gateway`` gets its own subject and stream prefix and its own data
directory, so gateways never see each other's state even on one server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.limiter.app import build as build_limiter
from services.metering.app import build as build_metering
from services.registry.app import build as build_registry
from services.router.app import build as build_router
from shared.client import ByomClient
from shared.identity import mint_token
from shared.secrets import SecretBox
from shared.service import Service
from shared.settings import Settings
from shared.subjects import Subjects

AUTH_SECRET = "test-auth-secret-that-is-long-enough-for-hs256"
BUILDERS: dict[str, Callable[[Settings], Service]] = {
    "registry": build_registry,
    "limiter": build_limiter,
    "metering": build_metering,
    "router": build_router,
}


def gateway_settings(nats_url: str, data_dir: Path, **overrides: Any) -> Settings:
    run = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "nats_url": nats_url,
        "data_dir": data_dir,
        "auth_secret": AUTH_SECRET,
        "secret_key": SecretBox.generate_key(),
        "subject_prefix": f"t{run}",
        "stream_prefix": f"T{run}_",
        **overrides,
    }
    return Settings(**values)


@dataclass
class Gateway:
    settings: Settings
    services: list[Service] = field(default_factory=list)
    clients: list[ByomClient] = field(default_factory=list)

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.settings.subject_prefix, self.settings.stream_prefix)

    async def start(self, names: Iterable[str] = tuple(BUILDERS)) -> None:
        for name in names:
            await self.start_service(name)

    async def start_service(
        self, name: str, settings: Settings | None = None
    ) -> Service:
        """Start one more replica of a service, with an instance id of its own
        (and ``settings`` instead of the gateway's, when given)."""
        replica = sum(service.name == name for service in self.services) + 1
        settings = (settings or self.settings).model_copy(
            update={"instance": f"{self.settings.instance}-{name}-{replica}"}
        )
        service = BUILDERS[name](settings)
        await service.start()
        self.services.append(service)
        return service

    async def stop_service(self, name: str) -> None:
        """Stop every replica of a service and forget them."""
        for service in [s for s in self.services if s.name == name]:
            await service.stop()
            self.services.remove(service)

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        for service in reversed(self.services):
            await service.stop()

    def token(
        self, user: str = "alice", groups: Iterable[str] = (), *, admin: bool = False
    ) -> str:
        return mint_token(AUTH_SECRET, user=user, groups=groups, admin=admin)

    async def client(
        self,
        user: str = "alice",
        groups: Iterable[str] = (),
        *,
        admin: bool = False,
        token: str | None = None,
    ) -> ByomClient:
        client = await ByomClient.connect(
            self.settings.nats_url,
            token if token is not None else self.token(user, groups, admin=admin),
            subjects=self.subjects,
        )
        self.clients.append(client)
        return client
