"""Usage queries agree with totals computed independently, for every grouping."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.metering.queries import usage_rows
from services.metering.store import UsageStore
from shared.contracts.usage import UsageEvent, UsageQuery
from shared.identity import Principal
from shared.transport import invalid_from_validation
from tests.metering.events import BASE, expected_rows, make_events, row_key

ADMIN = Principal("root", roles=("enrollment-admin",))
GROUP_KEYS = ("model", "project", "user", "application")
GROUPINGS = [
    list(keys)
    for size in range(len(GROUP_KEYS) + 1)
    for keys in itertools.combinations(GROUP_KEYS, size)
]
RANGE = {"from": BASE.isoformat(), "to": (BASE + timedelta(hours=4)).isoformat()}


@pytest.fixture(scope="module")
def events() -> list[UsageEvent]:
    return make_events(1500)


@pytest.fixture(scope="module")
async def store(
    events: list[UsageEvent], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[UsageStore]:
    store = UsageStore(tmp_path_factory.mktemp("metering") / "usage.sqlite3")
    await store.start()
    await store.insert(events)
    yield store
    await store.stop()


async def answer(
    store: UsageStore, caller: Principal = ADMIN, **body: Any
) -> dict[tuple[Any, ...], dict[str, Any]]:
    query = UsageQuery.model_validate({**RANGE, **body})
    rows = await usage_rows(store, query, caller)
    keyed = {row_key(row, query.group_by, query.bucket): row for row in rows}
    assert len(keyed) == len(rows), "a group appeared twice"
    return keyed


@pytest.mark.parametrize("bucket", [None, "minute", "hour", "day"])
@pytest.mark.parametrize("group_by", GROUPINGS, ids=lambda k: "+".join(k) or "all")
async def test_every_grouping_matches_independent_totals(
    store: UsageStore,
    events: list[UsageEvent],
    group_by: list[str],
    bucket: str | None,
) -> None:
    """Counts, token sums and exact nearest-rank percentiles, per group."""
    got = await answer(store, group_by=group_by, bucket=bucket)
    assert got == expected_rows(events, group_by, bucket)


@pytest.mark.parametrize(
    "filters",
    [
        {"model": "m-beta"},
        {"project": "p2", "application": "workshop"},
        {"user": "carol", "model": "m-alpha", "project": "p1"},
    ],
)
async def test_filters_narrow_the_totals(
    store: UsageStore, events: list[UsageEvent], filters: dict[str, str]
) -> None:
    kept = [e for e in events if all(getattr(e, k) == v for k, v in filters.items())]
    got = await answer(store, group_by=["user"], bucket="hour", filters=filters)
    assert got == expected_rows(kept, ["user"], "hour")


async def test_a_user_sees_only_their_own_usage_whatever_they_ask(
    store: UsageStore, events: list[UsageEvent]
) -> None:
    bob = Principal("bob")
    own = [event for event in events if event.user == "bob"]
    asked_for_alice = await answer(
        store, bob, group_by=["user", "model"], filters={"user": "alice"}
    )
    assert asked_for_alice == expected_rows(own, ["user", "model"], None)
    assert {row["user"] for row in asked_for_alice.values()} == {"bob"}


async def test_the_time_range_is_half_open(
    store: UsageStore, events: list[UsageEvent]
) -> None:
    start, end = BASE + timedelta(minutes=40), BASE + timedelta(minutes=95)
    kept = [e for e in events if start <= _when(e) < end]
    got = await answer(store, **{"from": start.isoformat(), "to": end.isoformat()})
    assert got == expected_rows(kept, [], None)


async def test_an_empty_range_has_no_rows(store: UsageStore) -> None:
    got = await answer(store, **{"from": "2020-01-01T00:00:00Z", "to": "2020-01-02"})
    assert got == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"group_by": ["model", "colour"]}, "group_by.1"),
        ({"bucket": "week"}, "bucket"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"filters": {"region": "eu"}}, "filters.region"),
        ({"limit": 3}, "limit"),
    ],
)
def test_a_bad_query_names_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UsageQuery.model_validate(body)
    assert invalid_from_validation(caught.value).field == field


def _when(event: UsageEvent) -> datetime:
    return datetime.fromisoformat(event.time)
