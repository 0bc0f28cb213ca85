"""What every gateway service shares: connect, serve endpoints, answer status.

A service is a ``Service`` with its endpoints and, optionally, components
with ``start``/``stop`` (a registry follower, a consumer loop). ``run``
starts it and stops it cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from shared import bus
from shared.errors import Forbidden
from shared.identity import TokenVerifier
from shared.logs import configure_logging, get_logger
from shared.metrics import Metrics, metrics_port
from shared.settings import Settings
from shared.subjects import Subjects
from shared.telemetry import configure_tracing
from shared.transport import Call, Endpoint, Handler

_log = get_logger(__name__)


def gateway_version() -> str:
    try:
        return package_version("byom-gateway")
    except PackageNotFoundError:
        return "0+unknown"


class Component(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Service:
    """One process of the gateway: a NATS connection and its endpoints."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.subjects = Subjects(settings.subject_prefix, settings.stream_prefix)
        self.verifier = TokenVerifier(
            secret=settings.auth_secret, public_key=settings.auth_public_key
        )
        self.endpoints: list[Endpoint] = []
        self.components: list[Component] = []
        self.registry_version: Callable[[], int] = lambda: 0
        self.metrics = Metrics()
        self._started_at = time.monotonic()
        self._nc: NatsClient | None = None

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()

    def serve(
        self,
        subject: str,
        handler: Handler,
        *,
        authenticate: bool = True,
        replicas_share: bool = True,
        quiet: bool = False,
    ) -> None:
        """Answer ``subject`` with ``handler`` once started."""
        queue = f"{self.subjects.prefix}-{self.name}" if replicas_share else None
        verifier = self.verifier if authenticate else None
        span = f"{self.name} {subject.removeprefix(self.subjects.prefix + '.')}"
        self.endpoints.append(
            Endpoint(
                subject,
                handler,
                queue=queue,
                verifier=verifier,
                span_name=span,
                quiet=quiet,
                metrics=self.metrics,
            )
        )

    async def start(self) -> None:
        """Connect, declare streams, start components, then open endpoints.

        A start that fails part-way releases what it had opened.
        """
        self._nc = await bus.connect(self.settings, f"byom-{self.name}")
        try:
            await self._open()
        except BaseException:
            await self.stop()
            raise

    async def _open(self) -> None:
        await bus.bootstrap(self.js, self.subjects, self.settings.stream_replicas)
        for component in self.components:
            await component.start()
        self.serve(self.subjects.status, self._status, replicas_share=False)
        for endpoint in self.endpoints:
            await endpoint.start(self.nc)
        # A subscription is only buffered until flushed: after the server's
        # PONG, "service_started" means every endpoint is reachable.
        await self.nc.flush()
        self.metrics.serve(metrics_port(self.name))
        _log.info(
            "service_started",
            instance=self.settings.instance,
            nats_url=bus.redacted(self.settings.nats_url),
            registry_version=self.registry_version(),
        )

    async def stop(self) -> None:
        """Stop taking requests, finish those in flight, then disconnect."""
        for endpoint in self.endpoints:
            await endpoint.stop()
        for component in reversed(self.components):
            await component.stop()
        if self._nc is not None:
            try:
                await self._nc.drain()
            except NatsError as exc:
                _log.warning("nats_drain_failed", error=str(exc))
                await self._nc.close()
            self._nc = None
        self.metrics.close()
        _log.info("service_stopped", instance=self.settings.instance)

    async def _status(self, call: Call) -> dict[str, Any]:
        if not call.caller.is_admin:
            raise Forbidden("byom.status is for enrollment administrators")
        return {
            "service": self.name,
            "instance": self.settings.instance,
            "version": gateway_version(),
            "registry_version": self.registry_version(),
            "uptime_s": round(time.monotonic() - self._started_at, 3),
        }


def run(build: Callable[[Settings], Service]) -> None:
    """Run a service in the foreground until SIGINT or SIGTERM."""
    settings = Settings()
    service = build(settings)
    configure_logging(service.name, settings.log_level)
    configure_tracing(service.name)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run_until_signalled(service))


GC_THRESHOLDS = (50_000, 20, 100)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Use uvloop when installed: socket writes and wake-ups cost less."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _tune_garbage_collector() -> None:
    """Collect rarely, and never again scan what exists once started.

    Windows, reservations and registry views are long-lived objects; with
    the default thresholds the collector's full passes over them were the
    limiter's p99 at concurrency 64 (128 ms; 38 ms with these settings,
    and 26 % less CPU per acquire, bench/limiter.py). Almost all garbage
    here is freed by reference counting, not by the collector.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _run_until_signalled(service: Service) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    _tune_garbage_collector()
    await stop.wait()
    await service.stop()
