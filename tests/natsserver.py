"""NATS servers for tests: ``NATS_URL``, a container, or the local binary.

The order follows docs/testing.md: a ``NATS_URL`` from the environment
wins; otherwise testcontainers when a Docker daemon answers; otherwise a
private ``nats-server -js`` on a free port in a temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

_LISTENING = re.compile(r"Listening for client connections on [\d.]+:(\d+)")
START_TIMEOUT_S = 10.0


class NatsProcess:
    """A ``nats-server`` child process with JetStream in its own directory."""

    def __init__(self, store: Path, args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise RuntimeError(
                "nats-server is not installed: apt-get install -y nats-server, "
                "or set NATS_URL to a server with JetStream"
            )
        store.mkdir(parents=True, exist_ok=True)
        self.log_path = store / "nats.log"
        self._cmd = [
            binary,
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-js",
            "-sd",
            str(store),
            "-l",
            str(self.log_path),
            *args,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(self._cmd)
        self.port = self._wait_for_port()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def _wait_for_port(self) -> int:
        import time

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.log_path.exists():
                found = _LISTENING.search(self.log_path.read_text())
                if found:
                    return int(found.group(1))
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"nats-server did not start; see {self.log_path}")


def _docker_answers() -> bool:
    """Tell whether a Docker daemon answers on its socket."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://") or not Path(host[7:]).exists():
        return False
    transport = httpx.HTTPTransport(uds=host[7:])
    try:
        with httpx.Client(transport=transport, timeout=2) as client:
            return client.get("http://docker/_ping").status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def nats_server(tmp: Path) -> Iterator[str]:
    """Yield the URL of a NATS server with JetStream for this test session."""
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    if _docker_answers():
        from testcontainers.community.nats import NatsContainer  # type: ignore[import-not-found]

        with NatsContainer("nats:2.10", jetstream=True) as container:
            yield container.nats_uri()
        return
    server = NatsProcess(tmp / "nats")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
