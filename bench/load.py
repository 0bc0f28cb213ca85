"""Closed-loop load: N workers call as fast as answers come back.

A level runs a warm-up, then a measured stretch; only calls that start and
end inside the measured stretch count toward latency and throughput, while
every call sent counts toward the totals that metering must reach. The same
driver runs the gateway calls (through ``ByomClient``) and the direct calls
to the provider (through ``httpx`` on the router's aiohttp transport), so
both sides are timed the same way.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from shared.client import ByomClient

MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]
APPLICATION = "workshop"
ERROR_SAMPLES = 5

Call = Callable[[int], Awaitable[float | None]]
"""One request by worker-local sequence number; returns the time to first
chunk in seconds for a stream, ``None`` otherwise; raises on failure."""


@dataclass
class Sample:
    """What one load level measured."""

    concurrency: int
    sent: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Return throughput, latency percentiles and error counts."""
        result: dict[str, Any] = {
            "concurrency": self.concurrency,
            "sent": self.sent,
            "measured": len(self.latencies_ms),
            "errors": self.errors,
            "rps": len(self.latencies_ms) / self.seconds if self.seconds else 0.0,
            **percentiles(self.latencies_ms, "latency_ms"),
        }
        if self.ttft_ms:
            result.update(percentiles(self.ttft_ms, "ttft_ms"))
        if self.error_examples:
            result["error_examples"] = self.error_examples
        return result


def percentile(values: list[float], q: float) -> float:
    """Return the nearest-rank percentile ``q`` (0..100) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def percentiles(values: list[float], name: str) -> dict[str, float]:
    return {f"{name}_p{q}": percentile(values, q) for q in (50, 95, 99)}


async def drive(call: Call, concurrency: int, warmup_s: float, run_s: float) -> Sample:
    """Run ``concurrency`` workers for ``warmup_s + run_s`` seconds."""
    sample = Sample(concurrency)
    start = time.perf_counter()
    measure_from = start + warmup_s
    until = measure_from + run_s

    async def worker(offset: int) -> None:
        sequence = offset
        while time.perf_counter() < until:
            await _one(call, sequence, sample, measure_from, until)
            sequence += concurrency

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    sample.seconds = run_s
    return sample


async def _one(
    call: Call, sequence: int, sample: Sample, measure_from: float, until: float
) -> None:
    began = time.perf_counter()
    sample.sent += 1
    try:
        first = await call(sequence)
    except Exception as exc:  # every failure is counted, whatever its kind
        sample.errors += 1
        if len(sample.error_examples) < ERROR_SAMPLES:
            sample.error_examples.append(f"{type(exc).__name__}: {exc}"[:200])
        return
    ended = time.perf_counter()
    if began >= measure_from and ended <= until:
        sample.latencies_ms.append((ended - began) * 1000)
        if first is not None:
            sample.ttft_ms.append((first - began) * 1000)


@dataclass
class Callers:
    """The calls one benchmark makes, gateway and direct, plain and streamed."""

    clients: Callable[[int], ByomClient]
    """The gateway client (one user's token) for a sequence number."""
    projects: Callable[[int], str]
    models: Callable[[int], str]
    http: httpx.AsyncClient
    provider_model: str
    provider_headers: dict[str, str]

    async def gateway(self, sequence: int) -> float | None:
        request = {"model": self.models(sequence), "messages": MESSAGES}
        reply = await self.clients(sequence).chat(
            request, application=APPLICATION, project=self.projects(sequence)
        )
        if not reply.get("choices"):
            raise ValueError(f"a completion without choices: {reply}")
        return None

    async def gateway_stream(self, sequence: int) -> float | None:
        request = {"model": self.models(sequence), "messages": MESSAGES}
        first = None
        stream = self.clients(sequence).chat_stream(
            request, application=APPLICATION, project=self.projects(sequence)
        )
        async for _chunk in stream:
            first = first or time.perf_counter()
        return first

    async def direct(self, _sequence: int) -> float | None:
        body = {"model": self.provider_model, "messages": MESSAGES}
        response = await self.http.post(
            "/v1/chat/completions",
            content=orjson.dumps(body),
            headers=self.provider_headers,
        )
        response.raise_for_status()
        if not orjson.loads(response.content).get("choices"):
            raise ValueError("a completion without choices")
        return None

    async def direct_stream(self, _sequence: int) -> float | None:
        body = {
            "model": self.provider_model,
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        first = None
        async with self.http.stream(
            "POST",
            "/v1/chat/completions",
            content=orjson.dumps(body),
            headers=self.provider_headers,
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    first = first or time.perf_counter()
                    orjson.loads(line[6:])
        return first
