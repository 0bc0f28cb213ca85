"""The limiter service on a real NATS server: partitions, journal, restarts.

These tests talk to the limiter as the router does, on the partition
subject of the model, with ``QuotaRequest`` bodies.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as NatsClient

import services.limiter.partition
from services.limiter.app import Limiter
from services.limiter.handlers import refusal
from services.limiter.journal import Journal, Snapshots
from services.limiter.limits import Limits, RateLimit
from services.limiter.partition import take_over
from services.limiter.quota import Denial
from services.router.quota import QuotaClient
from shared.bus import connect
from shared.client import ByomClient
from shared.contracts.limiter import QuotaRequest
from shared.errors import Unavailable
from shared.service import Service
from shared.subjects import Subjects, limiter_partition
from shared.transport import ERROR_HEADER
from tests.harness import Gateway

USER = {"rpm": 1000}
"""Every model needs a user limit; these quota requests carry no user."""


async def register_model(
    admin: ByomClient, limits: dict[str, Any], name: str = "house-gpt"
) -> str:
    """Register a model with ``limits`` and return its rid."""
    source = await admin.registry(
        "source.create",
        {"name": f"{name}-source", "base_url": "http://127.0.0.1:9"},
    )
    model = await admin.registry(
        "model.register",
        {
            "source": source["rid"],
            "name": name,
            "provider": "openai",
            "provider_model": "gpt-4o-mini",
            "endpoints": [
                {"api": "openai_chat", "path": "/v1/chat/completions"},
            ],
            "limits": limits,
        },
    )
    return str(model["rid"])


class LimiterCaller:
    """Send quota requests and settlements the way the router does."""

    def __init__(self, nc: NatsClient, subjects: Subjects) -> None:
        self.nc = nc
        self.subjects = subjects

    async def acquire(self, body: dict[str, Any]) -> dict[str, Any]:
        """Return the reply body; an error reply is ``{"error": {...}}``."""
        body = {"request_id": uuid.uuid4().hex, "project": "p", **body}
        subject = self.subjects.limiter_acquire_at(limiter_partition(body["model"]))
        reply = await self.nc.request(subject, orjson.dumps(body), timeout=5)
        decoded: dict[str, Any] = orjson.loads(reply.data)
        assert (ERROR_HEADER in (reply.headers or {})) == ("error" in decoded)
        return decoded

    async def settle(self, body: dict[str, Any]) -> None:
        subject = self.subjects.limiter_settle_at(limiter_partition(body["model"]))
        await self.nc.publish(subject, orjson.dumps({"project": "p", **body}))
        await self.nc.flush()


async def caller_for(gateway: Gateway) -> LimiterCaller:
    nc = await connect(gateway.settings, "limiter-test")
    return LimiterCaller(nc, gateway.subjects)


def the_limiter(gateway: Gateway) -> Service:
    return next(s for s in gateway.services if s.name == "limiter")


async def restart_limiter(gateway: Gateway) -> None:
    limiter = the_limiter(gateway)
    await limiter.stop()
    gateway.services.remove(limiter)
    await gateway.start_service("limiter")


async def caught_up(gateway: Gateway) -> None:
    """Wait until the limiters have applied the registry's latest change."""
    registry = next(s for s in gateway.services if s.name == "registry")
    version = registry.registry_version()
    for service in gateway.services:
        for component in service.components:
            if isinstance(component, Limiter) and component.follower is not None:
                await component.follower.wait_for_version(version, 5.0)


def admitted(replies: list[dict[str, Any]]) -> int:
    return sum("reservation" in reply for reply in replies)


async def test_a_full_window_is_still_full_after_the_only_limiter_restarts(
    gateway: Gateway,
) -> None:
    admin = await gateway.client("root", admin=True)
    rid = await register_model(admin, {"enrollment": {"rpm": 5}, "user": USER})
    caller = await caller_for(gateway)

    before = [
        await caller.acquire({"model": rid, "tokens": 10, "project": f"p{i}"})
        for i in range(6)
    ]
    await restart_limiter(gateway)
    after = await caller.acquire({"model": rid, "tokens": 10, "project": "p9"})

    assert admitted(before) == 5
    assert after["error"]["code"] == "rate_limited"
    assert after["error"]["scope"] == "enrollment"
    await caller.nc.close()


async def test_a_restart_from_a_snapshot_keeps_windows_and_settlements(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a snapshot after every batch, the restart replays nothing.

    The project gets 70 % of 2000 tokens: 100 settled plus 1000 leave 300.
    """
    monkeypatch.setattr(services.limiter.partition, "SNAPSHOT_EVERY_S", 0.0)
    admin = await gateway.client("root", admin=True)
    rid = await register_model(
        admin, {"enrollment": {"rpm": 100, "tpm": 2000}, "user": USER}
    )
    await restart_limiter(gateway)
    caller = await caller_for(gateway)

    first = await caller.acquire({"model": rid, "tokens": 1000})
    await caller.settle(
        {"model": rid, "reservation": first["reservation"], "tokens": 100}
    )
    second = await caller.acquire({"model": rid, "tokens": 1000})
    await restart_limiter(gateway)
    third = await caller.acquire({"model": rid, "tokens": 301})
    fourth = await caller.acquire({"model": rid, "tokens": 300})

    assert "reservation" in second
    assert third["error"]["limit"] == "tpm"
    assert "reservation" in fourth
    await caller.nc.close()


async def test_a_settlement_rides_the_next_grant_into_the_journal(
    gateway: Gateway,
) -> None:
    """A settlement waits to share a batch; replay after a restart keeps it.

    No snapshot is due, so the restarted limiter rebuilds from the journal
    alone: 100 settled plus 1000 of the project's 1400 leave room for 300.
    """
    admin = await gateway.client("root", admin=True)
    rid = await register_model(
        admin, {"enrollment": {"rpm": 100, "tpm": 2000}, "user": USER}
    )
    caller = await caller_for(gateway)

    first = await caller.acquire({"model": rid, "tokens": 1000})
    await caller.settle(
        {"model": rid, "reservation": first["reservation"], "tokens": 100}
    )
    second = await caller.acquire({"model": rid, "tokens": 1000})
    await restart_limiter(gateway)
    third = await caller.acquire({"model": rid, "tokens": 301})
    fourth = await caller.acquire({"model": rid, "tokens": 300})

    assert "reservation" in second
    assert third["error"]["limit"] == "tpm"
    assert "reservation" in fourth
    await caller.nc.close()


async def test_a_retried_request_id_is_granted_once(gateway: Gateway) -> None:
    admin = await gateway.client("root", admin=True)
    rid = await register_model(admin, {"enrollment": {"rpm": 3}, "user": USER})
    caller = await caller_for(gateway)
    body = {"model": rid, "tokens": 1, "request_id": "req-1"}

    replies = [await caller.acquire(body) for _ in range(3)]
    others = [await caller.acquire({"model": rid, "tokens": 1}) for _ in range(2)]

    assert replies[0] == replies[1] == replies[2]
    assert "reservation" in replies[0]
    assert admitted(others) == 1, "the project's rpm is 2"
    await caller.nc.close()


async def test_an_edited_limit_applies_at_once_and_keeps_the_window(
    gateway: Gateway,
) -> None:
    admin = await gateway.client("root", admin=True)
    rid = await register_model(admin, {"enrollment": {"rpm": 10}, "user": USER})
    caller = await caller_for(gateway)
    for _ in range(4):
        assert "reservation" in await caller.acquire({"model": rid, "tokens": 1})

    await admin.registry(
        "model.update",
        {"rid": rid, "limits": {"enrollment": {"rpm": 4}, "user": USER}},
    )
    await caught_up(gateway)
    refused = await caller.acquire({"model": rid, "tokens": 1})

    assert refused["error"]["code"] == "rate_limited"
    assert refused["error"]["scope"] == "enrollment"
    await caller.nc.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tokens": "many"}, "tokens"),
        ({"tokens": -1}, "tokens"),
        ({"tokens": 1, "project": None}, "project"),
        ({"tokens": 1, "request_id": 7}, "request_id"),
    ],
)
async def test_an_invalid_quota_request_names_the_field(
    gateway: Gateway, body: dict[str, Any], field: str
) -> None:
    admin = await gateway.client("root", admin=True)
    rid = await register_model(admin, {"enrollment": {"rpm": 10}, "user": USER})
    caller = await caller_for(gateway)

    reply = await caller.acquire({"model": rid, **body})

    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["field"] == field
    await caller.nc.close()


async def test_a_call_above_every_minute_of_tpm_names_max_completion_tokens(
    gateway: Gateway,
) -> None:
    admin = await gateway.client("root", admin=True)
    rid = await register_model(admin, {"enrollment": {"tpm": 1000}, "user": USER})
    caller = await caller_for(gateway)

    reply = await caller.acquire({"model": rid, "tokens": 800})

    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["field"] == "max_completion_tokens"
    assert "800" in reply["error"]["message"]
    assert "700" in reply["error"]["message"]
    await caller.nc.close()


def test_an_rpm_of_zero_is_rate_limited_until_an_admin_raises_it() -> None:
    """The registry refuses 0; a limit can only reach 0 through a project rule."""
    limits = Limits(RateLimit(rpm=0), RateLimit(rpm=0))
    error = refusal(Denial("enrollment", "rpm", None), 1, limits)

    assert error.to_body()["error"] == {
        "code": "rate_limited",
        "message": "the enrollment rpm limit is 0: no call is admitted until an "
        "admin raises it",
        "scope": "enrollment",
        "limit": "rpm",
        "retry_after_s": 60.0,
    }


async def test_an_unreadable_snapshot_is_replaced_by_the_whole_journal(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.limiter.partition, "SNAPSHOT_EVERY_S", 0.0)
    admin = await gateway.client("root", admin=True)
    rid = await register_model(admin, {"enrollment": {"rpm": 3}, "user": USER})
    await restart_limiter(gateway)
    caller = await caller_for(gateway)
    before = [
        await caller.acquire({"model": rid, "tokens": 1, "project": f"p{i}"})
        for i in range(3)
    ]

    snapshots = await caller.nc.jetstream().key_value(
        gateway.subjects.limiter_snapshots_bucket
    )
    await snapshots.put(f"p.{limiter_partition(rid)}", b"\0" * 8 + b"not zlib")
    await restart_limiter(gateway)
    after = await caller.acquire({"model": rid, "tokens": 1, "project": "p9"})

    assert admitted(before) == 3
    assert after["error"]["scope"] == "enrollment"
    await caller.nc.close()


async def test_an_owner_fenced_by_a_successor_answers_nothing(
    gateway: Gateway,
) -> None:
    """Two owners of one partition: once the successor has written its
    marker, the old owner's next grant fails to journal and is never sent."""
    nc = await connect(gateway.settings, "fencing-test")
    js, subjects = nc.jetstream(), gateway.subjects
    snapshots = Snapshots(await js.key_value(subjects.limiter_snapshots_bucket))

    def journal(writer: str) -> Journal:
        return Journal(
            js, subjects.limiter_journal_stream, subjects.limiter_journal(99), writer
        )

    old = await take_over(99, journal("old"), snapshots, "old")
    new = await take_over(99, journal("new"), snapshots, "new")
    request = QuotaRequest(request_id="r1", model="m", project="p", tokens=1)
    limits = Limits(RateLimit(rpm=10), RateLimit(rpm=10))

    assert await old.acquire(request, limits) is None
    assert old.closed
    assert await new.acquire(request, limits) == "99.1"
    await nc.close()


async def test_the_router_retries_a_partition_nobody_answers_then_is_unavailable(
    gateway: Gateway,
) -> None:
    nc = await connect(gateway.settings, "router-test")
    quota = QuotaClient(nc, gateway.subjects, timeout_s=0.2, budget_s=0.5)
    request = QuotaRequest(request_id="r1", model="nobody", project="p", tokens=1)
    await restart_limiter(gateway)
    limiter = the_limiter(gateway)
    await limiter.stop()
    gateway.services.remove(limiter)

    started = time.monotonic()
    with pytest.raises(Unavailable, match="did not answer"):
        await quota.acquire(request)

    assert 0.5 <= time.monotonic() - started < 1.0
    await gateway.start_service("limiter")
    await nc.close()
