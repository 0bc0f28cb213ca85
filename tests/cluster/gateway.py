"""The whole gateway on a three-node cluster, every service its own process.

Each service runs as OS processes (``tests/processes.py``) with its own NATS
user from ``deploy/nats/accounts.conf``, the deployment's subject names
(``byom``) and streams replicated three ways. The provider is the bench's
instant OpenAI-compatible server, also a process, so it never limits what
is measured. Clients connect with the ``app`` user and its inbox prefix,
administrators with the ``admin`` user, as a deployment's tools would.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from bench.provider import API_KEY
from shared.bus import servers_and_credentials
from shared.client import ByomClient
from shared.identity import mint_token
from shared.secrets import SecretBox
from shared.subjects import Subjects
from tests.cluster.nodes import NatsCluster
from tests.processes import ServiceProcess, quiet_environment, wait_until_answering

AUTH_SECRET = "cluster-test-auth-secret-long-enough-for-hs256"
APP_INBOX = "_INBOX.app"
SERVICES = ("registry", "metering", "limiter", "router")


async def connect(
    url: str, *, inbox_prefix: str = "_INBOX", errors: list[str] | None = None
) -> NatsClient:
    """Connect to every node listed in ``url``, reconnecting quickly.

    Errors the server sends (a permissions violation, a node going away) are
    appended to ``errors`` instead of being logged.
    """
    servers, user, password = servers_and_credentials(url)
    seen = errors if errors is not None else []

    async def on_error(exc: Exception) -> None:
        seen.append(str(exc))

    return await nats.connect(
        servers,
        error_cb=on_error,
        user=user,
        password=password,
        inbox_prefix=inbox_prefix,
        connect_timeout=2,
        reconnect_time_wait=0.2,
        max_reconnect_attempts=-1,
    )


@dataclass
class ClusterGateway:
    """A running deployment: NATS cluster, provider and service replicas."""

    root: Path
    nats: NatsCluster
    replicas: dict[str, list[ServiceProcess]] = field(default_factory=dict)
    provider: subprocess.Popen[bytes] | None = None
    provider_url: str = ""
    subjects: Subjects = field(default_factory=Subjects)
    secret_key: str = field(default_factory=SecretBox.generate_key)
    _clients: list[ByomClient] = field(default_factory=list)
    _admin: ByomClient | None = None

    def service_env(self, name: str, index: int) -> dict[str, str]:
        return quiet_environment(
            {
                "NATS_URL": self.nats.url(name),
                "BYOM_DATA_DIR": str(self.root / "data" / f"{name}-{index}"),
                "BYOM_AUTH_SECRET": AUTH_SECRET,
                "BYOM_SECRET_KEY": self.secret_key,
                "BYOM_STREAM_REPLICAS": "3",
                # Each metering replica keeps its own copy of the usage.
                "BYOM_METERING_REPLICA": f"r{index}" if index else "",
            }
        )

    def add(self, name: str) -> ServiceProcess:
        """Start one more replica of ``name``; wait for it with ``ready``."""
        replicas = self.replicas.setdefault(name, [])
        index = len(replicas)
        log = self.root / f"{name}-{index}.log"
        replica = ServiceProcess(name, self.service_env(name, index), log)
        replica.start()
        replicas.append(replica)
        return replica

    async def start(self, counts: dict[str, int]) -> None:
        """Start the provider, then the services in order, each once ready."""
        self._start_provider()
        for name in SERVICES:
            started = [self.add(name) for _ in range(counts.get(name, 0))]
            await self.ready(started)

    async def admin(self) -> ByomClient:
        """Return the administrator's client, connected once."""
        if self._admin is None:
            self._admin = await self.client("root", admin=True)
        return self._admin

    async def ready(self, replicas: list[ServiceProcess]) -> None:
        await wait_until_answering(await self.admin(), replicas)

    async def stop(self) -> None:
        for client in self._clients:
            await client.close()
        for name in reversed(SERVICES):
            for replica in self.replicas.get(name, []):
                replica.stop()
        if self.provider is not None:
            self.provider.terminate()
            self.provider.wait(timeout=10)

    async def client(self, user: str, *, admin: bool = False) -> ByomClient:
        """Connect as a person: the admin NATS user for admins, else ``app``."""
        if admin:
            nc = await connect(self.nats.url("admin"))
        else:
            nc = await connect(self.nats.url("app"), inbox_prefix=APP_INBOX)
        token = mint_token(AUTH_SECRET, user=user, admin=admin, ttl_s=3600)
        client = ByomClient(nc, token, subjects=self.subjects, owns_connection=True)
        self._clients.append(client)
        return client

    async def register_model(self, limits: dict[str, Any]) -> str:
        """Register a model on the provider with ``limits``; return its name."""
        admin = await self.admin()
        await admin.registry("access.set", {"enabled": True, "groups": None})
        name = f"m-{uuid.uuid4().hex[:8]}"
        source = await admin.registry(
            "source.create",
            {
                "name": f"{name}-source",
                "base_url": self.provider_url,
                "auth": {"type": "bearer", "secret": API_KEY},
            },
        )
        await admin.registry(
            "model.register",
            {
                "source": source["rid"],
                "name": name,
                "provider": "openai",
                "provider_model": "bench-model",
                "endpoints": [
                    {
                        "api": "openai_chat",
                        "path": "/v1/chat/completions",
                        "capabilities": ["streaming"],
                    }
                ],
                "limits": limits,
            },
        )
        return name

    async def registry_versions(self) -> dict[str, int]:
        """Return the registry version each replica reports it has applied."""
        admin = await self.admin()
        return {
            str(answer["instance"]): int(answer["registry_version"])
            for answer in await admin.status(wait_s=0.5)
        }

    async def wait_for_one_registry_version(self, timeout: float) -> float:
        """Return how long until every replica reports the same registry version."""
        started = time.monotonic()
        while len(set((await self.registry_versions()).values())) != 1:
            if time.monotonic() - started > timeout:
                raise AssertionError("replicas disagree on the registry version")
        return time.monotonic() - started

    async def time_to_apply_everywhere(self, timeout: float) -> float:
        """Return how long until every replica has applied the registry's
        newest version, polling the replicas' status answers."""
        expected = sum(len(replicas) for replicas in self.replicas.values())
        admin = await self.admin()
        started = time.monotonic()
        target: int | None = None
        while time.monotonic() - started < timeout:
            answers = await admin.status(wait_s=0.1)
            versions = {a["service"]: a["registry_version"] for a in answers}
            target = target or versions.get("registry")
            applied = [a["registry_version"] for a in answers]
            if target and len(applied) == expected and min(applied) >= target:
                return time.monotonic() - started
        raise AssertionError(f"a replica had not applied version {target}")

    def stored_request_ids(self, replica: int = 0) -> list[str]:
        """Read the request ids in a metering replica's database, duplicates
        included."""
        path = self.root / "data" / f"metering-{replica}" / "metering.sqlite3"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return [row[0] for row in db.execute("SELECT request_id FROM usage")]

    async def wait_until_every_copy_holds(self, events: int, timeout: float) -> None:
        """Wait until every metering replica's database holds ``events`` rows."""
        copies = range(len(self.replicas["metering"]))
        deadline = time.monotonic() + timeout
        while any(len(set(self.stored_request_ids(c))) < events for c in copies):
            assert time.monotonic() < deadline, "a metering copy fell behind"
            await asyncio.sleep(0.2)

    async def usage_events_in_stream(self) -> int:
        ops = await connect(self.nats.url("ops"))
        try:
            info = await ops.jetstream().stream_info(self.subjects.usage_stream)
        finally:
            await ops.close()
        return int(info.state.messages)

    async def wait_until_metered(self, timeout: float = 30.0) -> tuple[int, int]:
        """Return metering's total and the stream's count, once they agree.

        Routers may still be retrying events in the background, so both are
        read together until they match or the deadline passes.
        """
        admin = await self.admin()
        deadline = time.monotonic() + timeout
        while True:
            events = await self.usage_events_in_stream()
            rows = (await admin.usage({}))["rows"]
            metered = sum(row["requests"] for row in rows)
            if metered == events or time.monotonic() > deadline:
                return int(metered), events
            await asyncio.sleep(0.2)

    def _start_provider(self) -> None:
        log = self.root / "provider.log"
        with log.open("wb") as out:
            self.provider = subprocess.Popen(
                [sys.executable, "-m", "bench.provider"], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for line in log.read_text().splitlines():
                if "listening on " in line:
                    self.provider_url = line.rsplit(" ", 1)[-1].strip()
                    return
            time.sleep(0.05)
        raise AssertionError(f"the bench provider did not start; see {log}")
