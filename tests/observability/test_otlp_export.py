"""A service run with the standard OTLP variable exports its spans over OTLP.

The router runs as its own process, configured only by
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, and a local OTLP/HTTP receiver
decodes what arrives with the OTLP protobuf schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from shared.settings import Settings
from tests.e2e.test_walking_skeleton import APP, register
from tests.fakes.openai import API_KEY, FakeOpenAI
from tests.harness import Gateway, gateway_settings
from tests.processes import ServiceProcess, quiet_environment, wait_until_answering

EXPORT_WITHIN_S = 10.0
PROMPT = "a prompt that must stay out of spans 3f9b"


@dataclass
class ExportedSpan:
    service: str
    name: str
    attributes: dict[str, str]


@dataclass
class OtlpReceiver:
    """Accept OTLP/HTTP trace exports on ``/v1/traces`` and keep their spans."""

    spans: list[ExportedSpan] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
        if head.startswith(b"POST /v1/traces "):
            self._keep(body)
        reply = ExportTraceServiceResponse().SerializeToString()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n"
            b"content-length: " + str(len(reply)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + reply
        )
        await writer.drain()
        writer.close()

    def _keep(self, body: bytes) -> None:
        self.bodies.append(body)
        self.spans += decode_spans(body)
        self.arrived.set()

    async def wait_for(self, name: str, timeout: float) -> None:
        """Return once a span called ``name`` has been exported."""
        async with asyncio.timeout(timeout):
            while not any(span.name == name for span in self.spans):
                self.arrived.clear()
                await self.arrived.wait()


def decode_spans(body: bytes) -> list[ExportedSpan]:
    """Read an OTLP export request: each span with its service's name."""
    decoded = []
    for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
        resource = strings(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            decoded += [
                ExportedSpan(
                    resource["service.name"], span.name, strings(span.attributes)
                )
                for span in scope_spans.spans
            ]
    return decoded


def strings(attributes: Iterable[KeyValue]) -> dict[str, str]:
    return {attribute.key: attribute.value.string_value for attribute in attributes}


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    found = OtlpReceiver()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    found.url = f"http://127.0.0.1:{port}/v1/traces"
    yield found
    server.close()
    await server.wait_closed()


def exporting_router(
    settings: Settings, otlp_url: str, tmp_path: Path
) -> ServiceProcess:
    """A router process of this gateway, told only to export to ``otlp_url``."""
    return ServiceProcess(
        "router",
        quiet_environment(
            {
                "NATS_URL": settings.nats_url,
                "BYOM_DATA_DIR": str(tmp_path / "router"),
                "BYOM_AUTH_SECRET": str(settings.auth_secret),
                "BYOM_SECRET_KEY": str(settings.secret_key),
                "BYOM_SUBJECT_PREFIX": settings.subject_prefix,
                "BYOM_STREAM_PREFIX": settings.stream_prefix,
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_url,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            }
        ),
        tmp_path / "router.log",
    )


async def test_the_router_exports_its_spans_over_otlp_without_secrets(
    nats_url: str, tmp_path: Path, receiver: OtlpReceiver
) -> None:
    gateway = Gateway(gateway_settings(nats_url, tmp_path / "data"))
    router = exporting_router(gateway.settings, receiver.url, tmp_path)
    await gateway.start(["registry", "limiter", "metering"])
    try:
        async with FakeOpenAI() as provider:
            admin = await gateway.client("root", admin=True)
            await register(admin, provider)
            await admin.registry("access.set", {"enabled": True, "groups": None})
            router.start()
            await wait_until_answering(admin, [router])
            user = await gateway.client("alice")
            request = {
                "model": "house-gpt",
                "messages": [{"role": "user", "content": PROMPT}],
            }
            await user.chat(request, **APP)
            await receiver.wait_for("chat gpt-4o-mini", EXPORT_WITHIN_S)
    finally:
        # In a thread: the receiver in this loop must take the last export.
        await asyncio.to_thread(router.stop)
        await gateway.stop()

    names = {(span.service, span.name) for span in receiver.spans}
    assert {
        ("byom-router", "chat gpt-4o-mini"),
        ("byom-router", "limiter acquire"),
    } <= names
    provider_call = next(s for s in receiver.spans if s.name == "chat gpt-4o-mini")
    assert provider_call.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    exported = b"".join(receiver.bodies)
    assert API_KEY.encode() not in exported
    assert PROMPT.encode() not in exported
