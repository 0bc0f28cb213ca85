"""Prometheus metrics of one service process, served on a port of its own.

Each ``Service`` owns a ``Metrics`` with its own registry (several services
can share one test process without mixing their counts). The HTTP endpoint
is off unless a port is configured: ``BYOM_<SERVICE>_METRICS_PORT`` (for
example ``BYOM_ROUTER_METRICS_PORT``) or, for a process that runs a single
service, ``BYOM_METRICS_PORT``. Port 0 means off. See docs/observability.md.

Every update is a counter or histogram increment (about a microsecond);
nothing here does I/O on the request path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server

from shared.logs import get_logger

_log = get_logger(__name__)

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0,
)  # fmt: skip


def metrics_port(service: str, environ: Mapping[str, str] = os.environ) -> int:
    """Find the port this service's metrics are served on; 0 is off."""
    own = environ.get(f"BYOM_{service.upper()}_METRICS_PORT")
    shared = environ.get("BYOM_METRICS_PORT")
    value = own if own is not None else shared
    if not value:
        return 0
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(
            f"metrics port for {service} must be a number, got {value!r}: set "
            f"BYOM_{service.upper()}_METRICS_PORT or BYOM_METRICS_PORT"
        ) from exc


class MetricsPortError(RuntimeError):
    """The configured metrics port cannot be listened on."""


class Metrics:
    """The metric families of the gateway, in one registry per service."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None
        self._define_common()
        self._define_router()
        self._define_metering()

    def _define_common(self) -> None:
        self.requests = Counter(
            "byom_requests",
            "Messages handled, by subject and outcome (ok or an error code).",
            ["subject", "outcome"],
            registry=self.registry,
        )
        self.handling = Histogram(
            "byom_request_duration_seconds",
            "Time to handle one message, by subject.",
            ["subject"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def _define_router(self) -> None:
        self.tokens = Counter(
            "byom_tokens",
            "Tokens used by inference requests, by model and kind.",
            ["model", "kind"],
            registry=self.registry,
        )
        self.usage_events = Counter(
            "byom_usage_events",
            "Usage events published by the router, by model and status.",
            ["model", "status"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "byom_rate_limited",
            "Requests refused by the limiter, by scope and limit.",
            ["scope", "limit"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "byom_provider_latency_seconds",
            "Duration of provider calls, by provider and outcome.",
            ["provider", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def _define_metering(self) -> None:
        self.metering_events = Counter(
            "byom_metering_events",
            "Usage events taken by metering: stored, duplicate, rejected, "
            "dropped (gave up after the last delivery).",
            ["result"],
            registry=self.registry,
        )
        self.consumer_pending = Gauge(
            "byom_metering_consumer_pending",
            "Usage events in the stream not yet delivered to metering.",
            registry=self.registry,
        )
        self.consumer_ack_pending = Gauge(
            "byom_metering_consumer_ack_pending",
            "Usage events delivered to metering and not yet acknowledged.",
            registry=self.registry,
        )

    def serve(self, port: int, address: str = "0.0.0.0") -> int:  # noqa: S104
        """Serve ``/metrics`` on the port (0: off); return the bound port."""
        if port <= 0:
            return 0
        try:
            self._server, self._thread = _start_http_server(
                port, addr=address, registry=self.registry
            )
        except OSError as exc:
            raise MetricsPortError(
                f"cannot serve metrics on port {port}: {exc}; choose a free port "
                "with BYOM_<SERVICE>_METRICS_PORT, or 0 to turn metrics off"
            ) from exc
        bound = int(self._server.server_port)
        _log.info("metrics_serving", port=bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
