"""Gateway services as OS processes, to kill them the way a crash would.

``ServiceProcess`` runs ``python -m services.<name>`` with an environment of
its own and an instance id of its own, appends its output to a log file, and
can be stopped (SIGTERM, a clean drain) or killed (SIGKILL, nothing flushed).
Readiness is asked of the service itself: it is up when it answers
``byom.status`` with its instance id.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from shared.client import ByomClient

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports: each probe stays bound until all
    are chosen, so the system cannot hand the same port out twice."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def quiet_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """Return this process's environment without gateway settings, plus ``extra``.

    Settings inherited from the shell (a metrics port, a NATS URL) would make
    every replica fight for the same port or talk to the wrong server.
    """
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BYOM_", "NATS_", "OTEL_"))
    }
    return {
        **inherited,
        "PYTHONPATH": str(ROOT),
        "BYOM_LOG_LEVEL": os.environ.get("BYOM_TEST_SERVICE_LOG_LEVEL", "WARNING"),
        **extra,
    }


class ServiceProcess:
    """One replica of a gateway service as a child process."""

    def __init__(self, name: str, env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.instance = f"{name}-{uuid.uuid4().hex[:6]}"
        self._env = {**env, "BYOM_INSTANCE": self.instance}
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                env=self._env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, whatever was in flight is cut."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the drain takes too long."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


async def wait_until_answering(
    admin: ByomClient, replicas: Iterable[ServiceProcess], timeout: float = 0
) -> None:
    """Return once every replica answers ``byom.status``; raise on the deadline."""
    waiting = {replica.instance: replica for replica in replicas}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (timeout or READY_TIMEOUT_S)
    while waiting:
        for answer in await admin.status(wait_s=0.3):
            waiting.pop(str(answer.get("instance")), None)
        dead = [name for name, replica in waiting.items() if not replica.running]
        if dead or loop.time() > deadline:
            raise AssertionError(f"never answered status: {sorted(waiting)}")
