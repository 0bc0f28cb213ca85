"""Closed-loop chat load through the gateway, every outcome kept per request.

Workers send one chat at a time each, with a request id of their own, until
told to stop. A reply is an answer whether it is a completion or an error
envelope; a request that timed out or found no router has no answer. What
a fault cost is read from the outcomes: requests that failed, and the
longest time without a successful reply.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from shared.client import ByomClient
from shared.errors import ByomError

REQUEST_TIMEOUT_S = 6.0
NO_ANSWER = "no_answer"
REFUSALS = frozenset({"ok", "rate_limited"})
"""Outcomes the contract promises under load: served, or refused by a limit."""


@dataclass(frozen=True, slots=True)
class Outcome:
    request_id: str
    model: str
    started: float
    ended: float
    result: str
    """``ok``, an error code (``rate_limited``, ``unavailable``...) or
    ``no_answer`` when nothing came back."""

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    @property
    def answered(self) -> bool:
        return self.result != NO_ANSWER


@dataclass
class Load:
    """Closed-loop workers over a set of clients and models."""

    clients: list[ByomClient]
    models: list[str]
    concurrency: int = 16
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _workers: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._stop.clear()
        self._workers = [
            asyncio.create_task(self._work(index)) for index in range(self.concurrency)
        ]

    async def stop(self) -> list[Outcome]:
        self._stop.set()
        await asyncio.gather(*self._workers)
        return self.outcomes

    async def first_success(self, after: float, timeout: float) -> float:
        """Wait for a success among requests started after ``after``; return when.

        Raise when none comes within ``timeout`` seconds: the gateway stopped
        serving.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = [o.ended for o in self.outcomes if o.started > after and o.ok]
            if ended:
                return min(ended)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no request succeeded within {timeout} s")

    async def run_for(self, seconds: float) -> list[Outcome]:
        """Run a fresh batch for ``seconds``; return only its outcomes."""
        before = len(self.outcomes)
        self.start()
        await asyncio.sleep(seconds)
        await self.stop()
        return self.outcomes[before:]

    async def _work(self, index: int) -> None:
        client = self.clients[index % len(self.clients)]
        model = self.models[index % len(self.models)]
        while not self._stop.is_set():
            self.outcomes.append(await one_chat(client, model))


async def wait_until_served(client: ByomClient, model: str, timeout: float) -> None:
    """Return once a chat on ``model`` succeeds: a new model's event may lag."""
    deadline = time.monotonic() + timeout
    while (await one_chat(client, model)).result != "ok":
        if time.monotonic() > deadline:
            raise AssertionError(f"{model} was never served")
        await asyncio.sleep(0.1)


async def one_chat(client: ByomClient, model: str) -> Outcome:
    request_id = uuid.uuid4().hex
    started = time.monotonic()
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    try:
        await client.chat(
            body,
            application="workshop",
            project="cluster",
            request_id=request_id,
            timeout=REQUEST_TIMEOUT_S,
        )
        result = "ok"
    except ByomError as exc:
        unanswered = isinstance(exc.__cause__, NatsTimeout | NoRespondersError)
        result = NO_ANSWER if unanswered else exc.code
    return Outcome(request_id, model, started, time.monotonic(), result)


@dataclass(frozen=True, slots=True)
class FaultCost:
    """What a fault cost the clients of one load run."""

    results: dict[str, int]
    failed: int
    longest_gap_s: float
    """Longest time without a successful reply, from the fault on."""
    throughput: float

    def line(self, name: str) -> str:
        return (
            f"{name}: {sum(self.results.values())} requests {self.results}, "
            f"failed {self.failed}, longest gap without a success "
            f"{self.longest_gap_s:.2f} s, {self.throughput:.0f} req/s"
        )


def cost(outcomes: list[Outcome], fault_at: float | None = None) -> FaultCost:
    """Sum up a run: outcomes, failures, and the outage after ``fault_at``.

    Without a fault, the longest gap is measured from the run's start.
    """
    if fault_at is None:
        fault_at = min(o.started for o in outcomes)
    results = Counter(outcome.result for outcome in outcomes)
    failed = sum(n for result, n in results.items() if result not in REFUSALS)
    end = max(o.ended for o in outcomes)
    successes = sorted(o.ended for o in outcomes if o.ok and o.ended >= fault_at)
    marks = [fault_at, *successes, end]
    gap = max((b - a for a, b in itertools.pairwise(marks)), default=0.0)
    span = max(o.ended for o in outcomes) - min(o.started for o in outcomes)
    return FaultCost(dict(results), failed, gap, len(outcomes) / span)
