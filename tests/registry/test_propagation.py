"""A change reaches every router replica within a second, and status shows it.

The registry publishes a change's event before it replies, and each router
replica applies it from the stream; these tests measure how long after the
reply both replicas refuse, and fail past one second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.limiter.app import Limiter
from services.router.app import Router
from services.router.app import build as build_router
from services.router.checks import admit
from shared.client import ByomClient
from shared.errors import AccessNotEnabled, ByomError, Forbidden, ModelDisabled
from shared.identity import Principal
from shared.registry_view import RegistryFollower
from shared.service import Service
from tests.harness import Gateway
from tests.registry.conftest import register_model

BUDGET_S = 1.0
APP = {"application": "workshop", "project": "proj-a"}


async def add_router_replica(gateway: Gateway) -> Service:
    """Start one more router, as its own instance (a process of its own would be)."""
    settings = gateway.settings.model_copy(
        update={"instance": f"{gateway.settings.instance}-replica"}
    )
    service = build_router(settings)
    await service.start()
    gateway.services.append(service)
    return service


def followers(gateway: Gateway) -> list[RegistryFollower]:
    routers = [
        component
        for service in gateway.services
        for component in service.components
        if isinstance(component, Router)
    ]
    found = [router.follower for router in routers if router.follower is not None]
    assert len(found) == 2
    return found


def limiter_follower(gateway: Gateway) -> RegistryFollower:
    limiter = next(
        component
        for service in gateway.services
        for component in service.components
        if isinstance(component, Limiter)
    )
    assert limiter.follower is not None
    return limiter.follower


def registry_version(gateway: Gateway) -> int:
    registry = next(s for s in gateway.services if s.name == "registry")
    return registry.registry_version()


async def measure(
    gateway: Gateway, change: Callable[[], Awaitable[Any]]
) -> tuple[float, float]:
    """Make a change; return seconds to both replicas applying it, from the
    command being sent and from its reply."""
    sent = time.perf_counter()
    await change()
    replied = time.perf_counter()
    version = registry_version(gateway)
    await asyncio.gather(
        *(f.wait_for_version(version, BUDGET_S) for f in followers(gateway))
    )
    applied = time.perf_counter()
    return applied - sent, applied - replied


def admitted(gateway: Gateway, caller: Principal, model: str) -> list[str]:
    """Run each replica's admission checks; name each outcome."""
    outcomes = []
    for follower in followers(gateway):
        try:
            admit(
                follower.view,
                caller=caller,
                app_name=APP["application"],
                project=APP["project"],
                request={
                    "model": model,
                    "messages": [{"role": "user", "content": "x"}],
                },
                needs=set(),
            )
            outcomes.append("admitted")
        except ByomError as exc:
            outcomes.append(exc.code)
    return outcomes


def report(
    record: Callable[[str, object], None],
    kind: str,
    from_send: float,
    from_reply: float,
) -> None:
    print(
        f"\n{kind} applied by both router replicas {from_send * 1000:.2f} ms after "
        f"the command was sent, {from_reply * 1000:.2f} ms after its reply"
    )
    record(f"{kind}_propagation_ms", round(from_send * 1000, 3))


async def refused_by_every_request(
    client: ByomClient, model: str, error: type[ByomError], count: int = 20
) -> None:
    request = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(count):
        with pytest.raises(error):
            await client.chat(request, **APP)


async def setup_model(gateway: Gateway, groups: list[str] | None) -> dict[str, Any]:
    await add_router_replica(gateway)
    admin = await gateway.client("root", admin=True)
    model = await register_model(admin)
    await admin.registry("access.set", {"enabled": True, "groups": groups})
    version = registry_version(gateway)
    for follower in followers(gateway):
        await follower.wait_for_version(version, BUDGET_S)
    return model


async def test_a_disabled_model_is_refused_by_both_replicas_within_a_second(
    gateway: Gateway, record_property: Callable[[str, object], None]
) -> None:
    model = await setup_model(gateway, None)
    admin = await gateway.client("root", admin=True)
    alice = Principal(user="alice")
    assert admitted(gateway, alice, model["name"]) == ["admitted", "admitted"]

    from_send, from_reply = await measure(
        gateway, lambda: admin.registry("model.disable", {"rid": model["rid"]})
    )

    report(record_property, "model.disable", from_send, from_reply)
    assert from_send < BUDGET_S
    assert admitted(gateway, alice, model["name"]) == ["model_disabled"] * 2
    user = await gateway.client("alice")
    await refused_by_every_request(user, model["name"], ModelDisabled)


async def test_a_group_removed_from_access_is_refused_within_a_second(
    gateway: Gateway, record_property: Callable[[str, object], None]
) -> None:
    model = await setup_model(gateway, ["ml", "sales"])
    admin = await gateway.client("root", admin=True)
    bob = Principal(user="bob", groups=("ml",))
    assert admitted(gateway, bob, model["name"]) == ["admitted", "admitted"]

    from_send, from_reply = await measure(
        gateway,
        lambda: admin.registry("access.set", {"enabled": True, "groups": ["sales"]}),
    )

    report(record_property, "access.set", from_send, from_reply)
    assert from_send < BUDGET_S
    assert admitted(gateway, bob, model["name"]) == ["access_not_enabled"] * 2
    user = await gateway.client("bob", ["ml"])
    await refused_by_every_request(user, model["name"], AccessNotEnabled)


async def test_every_replica_answers_status_with_the_registry_version(
    gateway: Gateway,
) -> None:
    model = await setup_model(gateway, None)
    admin = await gateway.client("root", admin=True)
    await admin.registry("model.disable", {"rid": model["rid"]})
    version = registry_version(gateway)
    for follower in [*followers(gateway), limiter_follower(gateway)]:
        await follower.wait_for_version(version, BUDGET_S)

    replies = await admin.status(wait_s=0.5)

    assert sorted(r["service"] for r in replies) == [
        "limiter",
        "metering",
        "registry",
        "router",
        "router",
    ]
    routers = [r for r in replies if r["service"] == "router"]
    assert len({r["instance"] for r in routers}) == 2
    assert {r["registry_version"] for r in routers} == {version}
    others = {r["service"]: r["registry_version"] for r in replies}
    assert others["registry"] == version
    assert others["limiter"] == version
    for reply in replies:
        assert set(reply) == {
            "service",
            "instance",
            "version",
            "registry_version",
            "uptime_s",
        }


async def test_status_is_refused_to_a_user_who_is_not_an_administrator(
    gateway: Gateway,
) -> None:
    user = await gateway.client("alice", ["ml"])

    with pytest.raises(Forbidden, match="enrollment administrators"):
        await user.status(wait_s=0.3)


async def test_a_change_arrives_while_the_stream_consumers_are_lost(
    gateway: Gateway,
) -> None:
    """As when the node holding them dies: the replicas' ordered consumers on
    the registry stream vanish, and a change still reaches both replicas at
    once, long before a consumer is replaced after its missed heartbeats."""
    model = await setup_model(gateway, None)
    admin = await gateway.client("root", admin=True)
    js = admin.nc.jetstream()
    stream = gateway.subjects.registry_stream
    for consumer in await js.consumers_info(stream):
        await js.delete_consumer(stream, consumer.name)

    from_send, _ = await measure(
        gateway, lambda: admin.registry("model.disable", {"rid": model["rid"]})
    )

    assert from_send < 0.5
    assert (
        admitted(gateway, Principal(user="alice"), model["name"])
        == ["model_disabled"] * 2
    )
