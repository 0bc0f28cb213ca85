"""A real three-node NATS cluster with JetStream on loopback ports.

Each node is the local ``nats-server`` binary with its own store directory
and log, started with the deployment's own configuration
(``deploy/nats/node.conf``: its accounts and permissions) or with none. The
ports are chosen up front, by binding port 0 and releasing it, because every
node must know its peers' route ports before any of them starts; a killed
node restarts on the same ports and store, as a crashed server would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from tests.processes import free_ports

ROOT = Path(__file__).resolve().parents[2]
NODE_CONFIG = ROOT / "deploy" / "nats" / "node.conf"
CLUSTER_NAME = "byom"
START_TIMEOUT_S = 20.0
ROLES = ("router", "limiter", "registry", "metering", "admin", "app", "ops", "sys")


def passwords() -> dict[str, str]:
    """Return a password per NATS user of the deployment's configuration."""
    return {role: f"{role}-test-password" for role in ROLES}


@dataclass
class Node:
    """One ``nats-server`` of the cluster."""

    name: str
    port: int
    route_port: int
    store: Path
    process: subprocess.Popen[bytes] | None = None
    log_start: int = 0

    @property
    def log(self) -> Path:
        return self.store / "nats.log"

    def log_since_start(self) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, routes: list[int], config: Path | None) -> list[str]:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        peers = ",".join(f"nats://127.0.0.1:{port}" for port in routes)
        return [
            binary,
            *(["-c", str(config)] if config else []),
            "-a", "127.0.0.1", "-p", str(self.port), "-n", self.name,
            "-js", "-sd", str(self.store / "js"), "-l", str(self.log),
            "--cluster_name", CLUSTER_NAME,
            "-cluster", f"nats://127.0.0.1:{self.route_port}",
            "-routes", peers,
        ]  # fmt: skip


@dataclass
class NatsCluster:
    """Three nodes; ``start`` them, kill and restart any one, ``stop``."""

    root: Path
    config: Path | None = NODE_CONFIG
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = free_ports(6)
        self.nodes = [
            Node(f"n{i}", ports[2 * i - 2], ports[2 * i - 1], self.root / f"n{i}")
            for i in range(1, 4)
        ]

    @property
    def env(self) -> dict[str, str]:
        """The environment nats-server reads the users' passwords from."""
        return {
            f"BYOM_NATS_{role.upper()}_PASSWORD": password
            for role, password in passwords().items()
        }

    def url(self, user: str | None = None) -> str:
        """Return a NATS_URL naming every node, with ``user``'s password."""
        auth = f"{user}:{passwords()[user]}@" if user else ""
        return ",".join(f"nats://{auth}{node.address}" for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            self._spawn(node)
        for node in self.nodes:
            self._wait_listening(node)

    def kill(self, node: Node) -> None:
        """SIGKILL one node: no goodbye to its routes or clients."""
        if node.process is not None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=10)
            node.process = None

    def terminate(self, node: Node) -> None:
        """SIGTERM one node: a clean shutdown, as for an upgrade."""
        if node.process is not None:
            node.process.terminate()
            node.process.wait(timeout=20)
            node.process = None

    def restart(self, node: Node) -> None:
        self._spawn(node)
        self._wait_listening(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.terminate()
                node.process.wait(timeout=15)
                node.process = None

    async def wait_for_jetstream(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once JetStream answers with a meta leader, through ``ops``."""
        user = "ops" if self.config else None
        nc = await nats.connect(self.url(user).split(","), connect_timeout=2)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    reply = await nc.request("$JS.API.INFO", b"", timeout=1.0)
                except (NoRespondersError, NatsTimeout):
                    reply = None
                if reply is not None and "error" not in json.loads(reply.data):
                    return
                await asyncio.sleep(0.1)
        finally:
            await nc.close()
        raise AssertionError("JetStream never elected a meta leader")

    def violations(self) -> list[str]:
        """Return every permissions violation the nodes have logged."""
        return [
            line
            for node in self.nodes
            if node.log.exists()
            for line in node.log.read_text(errors="replace").splitlines()
            if "Violation" in line
        ]

    async def leader_of(self, stream: str) -> Node:
        """Return the node that leads ``stream``'s replicas."""
        nc = await nats.connect(self.url("ops").split(","), connect_timeout=2)
        try:
            info = await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()
        leader = info.cluster.leader if info.cluster else None
        return next(node for node in self.nodes if node.name == leader)

    async def wait_until_replicated(
        self, streams: list[str], timeout: float = START_TIMEOUT_S
    ) -> float:
        """Wait until every stream has a leader and two current replicas.

        Return how long it took: the time a rejoined node needs to catch up.
        """
        started = time.monotonic()
        nc = await nats.connect(self.url("ops").split(","), connect_timeout=2)
        try:
            while time.monotonic() - started < timeout:
                if all([await _replicated(nc, stream) for stream in streams]):
                    return time.monotonic() - started
                await asyncio.sleep(0.1)
        finally:
            await nc.close()
        raise AssertionError(f"streams never caught up on three nodes: {streams}")

    def _spawn(self, node: Node) -> None:
        node.store.mkdir(parents=True, exist_ok=True)
        # A restarted node appends to its log: the first run's lines stay.
        node.log_start = node.log.stat().st_size if node.log.exists() else 0
        others = [peer.route_port for peer in self.nodes if peer is not node]
        env = {"NATS_SERVER_NAME": node.name, **self.env}
        node.process = subprocess.Popen(
            node.command(others, self.config),
            env={"PATH": os.environ.get("PATH", ""), **env},
        )

    def _wait_listening(self, node: Node) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if "Server is ready" in node.log_since_start():
                return
            if node.process is None or node.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"nats node {node.name} did not start; see {node.log}")


async def _replicated(nc: NatsClient, stream: str) -> bool:
    try:
        info = await nc.jetstream().stream_info(stream)
    except (NatsTimeout, NatsError):
        return False
    cluster = info.cluster
    if cluster is None or not cluster.leader:
        return False
    replicas = cluster.replicas or []
    return len(replicas) == 2 and all(r.current and not r.offline for r in replicas)
