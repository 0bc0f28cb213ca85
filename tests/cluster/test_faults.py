"""Faults under load on a three-node cluster: what the contract still promises.

Each test drives closed-loop chat load at two models (one with an
enrollment rpm the load exceeds, one effectively unlimited) through two
routers, kills one part with SIGKILL, brings it back, and checks:

- every request the client saw answered (a completion or an error reply)
  has exactly one usage record in each metering replica's copy, and
  metering's total equals the usage stream's count (no event lost, none
  counted twice), a killed router included: it writes the event before the
  reply;
- every replica reports the same registry version afterwards;
- the limited model admitted at most its rpm (the run is shorter than the
  60 s window);
- the gateway serves again: a request sent after the fault succeeds.

What each fault cost (requests failed, longest time without a success) is
printed, not asserted: it depends on the machine's load.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from bench.cluster import cpu_seconds, machine_busy_seconds
from shared.client import ByomClient
from shared.errors import Unavailable
from tests.cluster.gateway import ClusterGateway
from tests.cluster.load import FaultCost, Load, Outcome, cost, wait_until_served

ENROLLMENT_RPM = 1000
PROJECT_RPM = 700
"""What binds: every call is in one project, whose limit is 70 % of the
enrollment's. Reached after the fault: the load runs a few hundred requests
a second, half of them on this model."""
UNLIMITED = {"enrollment": {"rpm": 1_000_000}, "user": {"rpm": 1_000_000}}
LOAD_CONCURRENCY = 16
BEFORE_FAULT_S = 1.5
AFTER_FAULT_S = 3.0
WARM_UP_S = 10.0
SERVE_AGAIN_S = 30.0
"""How long the gateway may take to serve again after a fault: JetStream
elects new leaders for the streams the killed node led, which takes seconds
(docs/deployment.md)."""
VIEW_CATCH_UP_S = 3.0
"""How long after the registry's reply a replica may take to apply a change
made while a node is down: its stream consumer may have lived on the lost
node and is replaced after two missed heartbeats of 0.5 s."""


@dataclass
class Models:
    limited: str
    free: str


async def fresh_models(deployment: ClusterGateway, user: ByomClient) -> Models:
    """Register both models and wait until the routers serve them."""
    models = Models(
        limited=await deployment.register_model(
            {"enrollment": {"rpm": ENROLLMENT_RPM}, "user": {"rpm": 1_000_000}}
        ),
        free=await deployment.register_model(UNLIMITED),
    )
    for model in (models.limited, models.free):
        await wait_until_served(user, model, WARM_UP_S)
    return models


async def users(deployment: ClusterGateway) -> list[ByomClient]:
    return [await deployment.client(f"user-{i}") for i in range(4)]


def check_usage(
    deployment: ClusterGateway, outcomes: list[Outcome], replica: int
) -> int:
    """Check a metering copy stores nothing twice; return the answered
    requests it does not hold."""
    stored = Counter(deployment.stored_request_ids(replica))
    answered = [o.request_id for o in outcomes if o.answered]
    unrecorded = [rid for rid in answered if rid not in stored]
    unanswered = [o.request_id for o in outcomes if not o.answered]
    recorded_anyway = sum(1 for rid in unanswered if rid in stored)
    print(
        f"  usage in copy {replica}: {len(answered)} answered, {len(unrecorded)} "
        f"of them not recorded; {len(unanswered)} unanswered, {recorded_anyway} "
        "of them recorded"
    )
    assert max(stored.values()) == 1
    return len(unrecorded)


def admitted(outcomes: list[Outcome], model: str) -> int:
    return sum(1 for o in outcomes if o.model == model and o.result == "ok")


async def run_fault(
    deployment: ClusterGateway,
    name: str,
    fault: Callable[[], Awaitable[None]],
    recover: Callable[[], Awaitable[float]],
    *,
    unrecorded_allowed: int = 0,
) -> list[Outcome]:
    """Load, fault, recover, stop; check the promises and print the cost."""
    clients = await users(deployment)
    models = await fresh_models(deployment, clients[0])
    load = Load(clients, [models.limited, models.free], concurrency=LOAD_CONCURRENCY)
    load.start()
    await asyncio.sleep(BEFORE_FAULT_S)
    fault_at = time.monotonic()
    await fault()
    await asyncio.sleep(AFTER_FAULT_S)
    recovery_s = await recover()
    served_again = await load.first_success(after=fault_at, timeout=SERVE_AGAIN_S)
    outcomes = await load.stop()
    agreed_s = await deployment.wait_for_one_registry_version(SERVE_AGAIN_S)

    metered, events = await deployment.wait_until_metered()
    print(f"\n{cost(outcomes, fault_at).line(name)}")
    print(
        f"  back in {recovery_s:.2f} s; first success of a request sent after "
        f"the fault {served_again - fault_at:.2f} s after it; replicas agreed on "
        f"the registry version {agreed_s:.2f} s after the load"
    )
    # The warm-up call was admitted too.
    limited = admitted(outcomes, models.limited) + 1
    print(f"  limited model admitted {limited} of its project rpm {PROJECT_RPM}")
    print(f"  metering total {metered}, usage stream {events}")
    assert metered == events
    await deployment.wait_until_every_copy_holds(events, SERVE_AGAIN_S)
    for replica in range(len(deployment.replicas["metering"])):
        assert check_usage(deployment, outcomes, replica) <= unrecorded_allowed
    assert limited <= PROJECT_RPM
    return outcomes


STREAMS = [
    "BYOM_REGISTRY",
    "BYOM_USAGE",
    "BYOM_LIMITER_JOURNAL",
    "KV_BYOM_LIMITER_OWNERS",
    "KV_BYOM_LIMITER_MEMBERS",
    "KV_BYOM_LIMITER_SNAPSHOTS",
]


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
async def test_a_lost_nats_node_loses_no_usage_and_rejoins(
    deployment: ClusterGateway, stop: str
) -> None:
    """SIGKILL is a crash; SIGTERM a clean stop, as for an upgrade."""
    nodes = deployment.nats
    # The usage stream's leader: the node whose loss puts usage events at
    # risk. Whatever else it leads (the limiter's journal, its buckets) is
    # out of writes until JetStream elects a new leader.
    victim = await nodes.leader_of("BYOM_USAGE")
    led = [stream for stream in STREAMS if await nodes.leader_of(stream) is victim]

    catch_up: list[asyncio.Task[tuple[float, float]]] = []

    async def fault() -> None:
        if stop == "SIGKILL":
            nodes.kill(victim)
        else:
            nodes.terminate(victim)
        catch_up.append(asyncio.create_task(change_after_fault(deployment)))

    async def recover() -> float:
        started = time.monotonic()
        nodes.restart(victim)
        await nodes.wait_until_replicated(STREAMS)
        return time.monotonic() - started

    await run_fault(
        deployment,
        f"{stop} NATS node {victim.name} (leading {', '.join(led)})",
        fault,
        recover,
    )

    registered_s, applied_s = await catch_up[0]
    print(
        f"  a model registered right after the fault: its reply after "
        f"{registered_s:.2f} s, applied by every replica {applied_s:.2f} s later"
    )
    assert applied_s < VIEW_CATCH_UP_S


async def change_after_fault(deployment: ClusterGateway) -> tuple[float, float]:
    """Register a model during the fault; return seconds to the registry's
    reply, and from it to every replica having applied the change.

    Registry commands may time out while JetStream elects new leaders; the
    registration is tried again (with new names) until one is answered.
    """
    started = time.monotonic()
    while True:
        try:
            await deployment.register_model(UNLIMITED)
            break
        except Unavailable:
            if time.monotonic() - started > SERVE_AGAIN_S:
                raise
    registered_s = time.monotonic() - started
    return registered_s, await deployment.time_to_apply_everywhere(SERVE_AGAIN_S)


@pytest.mark.parametrize("service", ["router", "limiter", "metering"])
async def test_a_killed_service_replica_keeps_the_contract(
    deployment: ClusterGateway, service: str
) -> None:
    victim = deployment.replicas[service][0]

    async def fault() -> None:
        victim.kill()

    async def recover() -> float:
        started = time.monotonic()
        victim.start()
        await deployment.ready([victim])
        return time.monotonic() - started

    await run_fault(deployment, f"{service} replica", fault, recover)


async def test_two_routers_against_one_in_the_same_run(
    deployment: ClusterGateway,
) -> None:
    """Print throughput and the CPU the routers and the machine used."""
    clients = await users(deployment)
    model = (await fresh_models(deployment, clients[0])).free
    load = Load(clients, [model], concurrency=32)
    second = deployment.replicas["router"][1]

    second.stop()
    one, one_cpu = await measured(deployment, load)
    second.start()
    await deployment.ready([second])
    two, two_cpu = await measured(deployment, load)

    print(f"\n{one.line('one router')}; {one_cpu}")
    print(f"{two.line('two routers')}; {two_cpu}")
    assert one.failed == 0
    assert two.failed == 0


async def measured(deployment: ClusterGateway, load: Load) -> tuple[FaultCost, str]:
    """Run the load for 4 s; return its cost and where the CPU went."""
    routers = [r for r in deployment.replicas["router"] if r.process is not None]
    pids = [r.process.pid for r in routers if r.process is not None]
    before = [cpu_seconds(pid) for pid in pids]
    busy_before, started = machine_busy_seconds(), time.monotonic()
    result = cost(await load.run_for(4.0))
    elapsed = time.monotonic() - started
    used = [cpu_seconds(pid) - was for pid, was in zip(pids, before, strict=True)]
    routers_pct = " + ".join(f"{100 * u / elapsed:.0f} %" for u in used)
    machine_pct = 100 * (machine_busy_seconds() - busy_before) / elapsed
    return result, f"router CPU {routers_pct} of a core; machine {machine_pct:.0f} %"


async def test_a_registry_on_a_lost_disk_rebuilds_from_the_replicated_stream(
    deployment: ClusterGateway,
) -> None:
    """Under its own NATS user, the registry reads the stream back."""
    await deployment.register_model(UNLIMITED)
    admin = await deployment.admin()
    before = await admin.registry("model.list", {})
    registry = deployment.replicas["registry"][0]

    registry.kill()
    shutil.rmtree(deployment.root / "data" / "registry-0")
    registry.start()
    await deployment.ready([registry])

    assert await admin.registry("model.list", {}) == before
    assert len(set((await deployment.registry_versions()).values())) == 1
