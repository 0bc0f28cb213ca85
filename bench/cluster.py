"""The processes under test: NATS, the bench provider and the four services.

Everything runs on this machine in a temporary directory of its own, with
its own subject and stream prefix, so a benchmark never touches a running
deployment. Each process's CPU time and peak memory are read from /proc,
the operating system's own accounting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.identity import mint_token
from shared.secrets import SecretBox
from shared.subjects import Subjects
from tests.natsserver import NatsProcess

SERVICES = ("registry", "limiter", "metering", "router")
READY_TIMEOUT_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PREFIX = "bench"


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; the fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """Return the CPU seconds every process on this machine has used (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def memory_mib(pid: int) -> dict[str, float]:
    """Return a process's resident (VmRSS) and peak resident (VmHWM) MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return {"rss_mib": values["VmRSS"], "peak_rss_mib": values["VmHWM"]}


@dataclass
class Cluster:
    """A private gateway; ``start`` it, use it, ``stop`` it."""

    root: Path
    trace_export: bool = True
    auth_secret: str = field(default_factory=SecretBox.generate_key)
    nats: NatsProcess | None = None
    provider_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def subjects(self) -> Subjects:
        return Subjects(PREFIX, "BENCH_")

    @property
    def pids(self) -> dict[str, int]:
        return {name: self.processes[name].pid for name in SERVICES}

    def token(self, user: str, *, admin: bool = False) -> str:
        return mint_token(self.auth_secret, user=user, admin=admin, ttl_s=6 * 3600)

    def start(self) -> None:
        """Start NATS, the provider, then the services; wait until all serve."""
        self.nats = NatsProcess(self.root / "nats")
        self.nats.start()
        self.provider_url = self._start_provider()
        env = self._service_env()
        for name in SERVICES:
            self._spawn(name, [sys.executable, "-m", f"services.{name}"], env)
        for name in SERVICES:
            self._wait_ready(name)

    def stop(self) -> None:
        """Stop the services (router first), the provider, then NATS."""
        for name in [*reversed(SERVICES), "provider"]:
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.nats is not None:
            self.nats.stop()

    def cpu(self) -> dict[str, float]:
        """Return the CPU seconds used so far by every service and the provider."""
        names = [*SERVICES, "provider"]
        seconds = {name: cpu_seconds(self.processes[name].pid) for name in names}
        seconds["nats"] = cpu_seconds(self._nats_pid())
        return seconds

    def memory(self) -> dict[str, dict[str, float]]:
        return {name: memory_mib(pid) for name, pid in self.pids.items()}

    def _nats_pid(self) -> int:
        assert self.nats is not None
        assert self.nats.process is not None
        return self.nats.process.pid

    def _start_provider(self) -> str:
        process = self._spawn(
            "provider", [sys.executable, "-m", "bench.provider"], dict(os.environ)
        )
        line = self._wait_for_line("provider", "listening on ")
        assert process.poll() is None
        return line.rsplit(" ", 1)[-1].strip()

    def _service_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "NATS_URL": self.nats.url if self.nats else "",
            "BYOM_DATA_DIR": str(self.root / "data"),
            "BYOM_AUTH_SECRET": self.auth_secret,
            "BYOM_SECRET_KEY": SecretBox.generate_key(),
            "BYOM_SUBJECT_PREFIX": self.subjects.prefix,
            "BYOM_STREAM_PREFIX": self.subjects.stream_prefix,
            "BYOM_LOG_LEVEL": "INFO",
        }
        if self.trace_export:
            # The provider swallows OTLP posts, so spans are really exported.
            env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"{self.provider_url}/v1/traces"
        return env

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        process = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        self.processes[name] = process
        return process

    def _wait_ready(self, name: str) -> None:
        self._wait_for_line(name, '"service_started"')

    def _wait_for_line(self, name: str, marker: str) -> str:
        path = self.root / f"{name}.log"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in path.read_text(errors="replace").splitlines():
                if marker in line:
                    return line
            if self.processes[name].poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start; see {path}")
