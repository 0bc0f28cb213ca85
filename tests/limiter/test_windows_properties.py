"""Random traffic against the quota book, checked by brute force.

A reference model keeps every reservation with its exact time and recomputes
each level's usage from scratch; after every step the book must agree with
it and no 60-second interval may hold more than the limit of its level.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.limiter.limits import Limits, RateLimit
from services.limiter.quota import Denial, Grant, QuotaBook, Scope
from services.limiter.windows import HELD_SECONDS, WINDOW_S

MODELS = ("m1", "m2")
PROJECTS = ("p1", "p2", "p3")
USERS = (None, "u1", "u2", "u3")
SCOPES: tuple[Scope, ...] = ("enrollment", "project", "user")
# A step of a script: its kind first, then what hypothesis drew for it.
Step = tuple[Any, ...]


@dataclass
class Booked:
    """What the reference model remembers about one admitted call."""

    grant: Grant
    time: float
    limits: Limits
    requests: int = 1
    tokens: int = 0
    bounded_tokens: int = 0
    open: bool = True

    def parties(self) -> list[tuple[Scope, str, str]]:
        g = self.grant
        found: list[tuple[Scope, str, str]] = [
            ("enrollment", g.model_id, ""),
            ("project", g.model_id, g.project),
        ]
        if g.user is not None:
            found.append(("user", g.model_id, g.user))
        return found


class Reference:
    """Recompute every window from the full history, slowly and plainly."""

    def __init__(self) -> None:
        self.booked: list[Booked] = []

    def used(self, party: tuple[Scope, str, str], second: int) -> tuple[int, int]:
        inside = [
            b
            for b in self.booked
            if party in b.parties() and second - HELD_SECONDS < b.grant.second <= second
        ]
        return sum(b.requests for b in inside), sum(b.tokens for b in inside)

    def full(
        self, call: Call, limits: Limits, second: int
    ) -> list[tuple[Scope, str, bool]]:
        """List (scope, limit, never fits) for each level the call overflows."""
        found = []
        for scope, name, limit in levels_of(call, limits):
            requests, tokens = self.used((scope, call.model, name), second)
            for which, have, needed, allowed in (
                ("rpm", requests, 1, limit.rpm),
                ("tpm", tokens, call.tokens, limit.tpm),
            ):
                if allowed is not None and have + needed > allowed:
                    found.append((scope, which, needed > allowed))
        return found

    def check_invariant(self) -> None:
        """Check the 60 s before each admission, under the limits it met.

        Only calls admitted up to it count: a later call at the same instant
        met other limits if they were edited in between.
        """
        for position, admitted in enumerate(self.booked):
            for party in admitted.parties():
                self.check_interval_ending_at(position, party)

    def check_interval_ending_at(
        self, position: int, party: tuple[Scope, str, str]
    ) -> None:
        admitted = self.booked[position]
        limit = limit_of(admitted.limits, party[0])
        if limit is None or admitted.requests == 0:
            return
        inside = [
            b
            for b in self.booked[: position + 1]
            if party in b.parties() and admitted.time - WINDOW_S <= b.time
        ]
        if limit.rpm is not None:
            assert sum(b.requests for b in inside) <= limit.rpm, party
        if limit.tpm is not None:
            assert sum(b.bounded_tokens for b in inside) <= limit.tpm, party


@dataclass(frozen=True)
class Call:
    model: str
    project: str
    user: str | None
    tokens: int


def name_of(call: Call, scope: Scope) -> str:
    return {"enrollment": "", "project": call.project, "user": call.user or ""}[scope]


def limit_of(limits: Limits, scope: Scope) -> RateLimit | None:
    return {"enrollment": limits.enrollment, "project": limits.project}.get(
        scope, limits.user
    )


def levels_of(call: Call, limits: Limits) -> list[tuple[Scope, str, RateLimit]]:
    found = []
    for scope in SCOPES:
        limit = limit_of(limits, scope)
        if limit is not None and (scope != "user" or call.user is not None):
            found.append((scope, name_of(call, scope), limit))
    return found


rate_limits = st.builds(
    RateLimit,
    rpm=st.none() | st.integers(0, 6),
    tpm=st.none() | st.integers(0, 150),
)
limits_strategy = st.builds(Limits, rate_limits, rate_limits, st.none() | rate_limits)
gaps = (
    st.floats(0, 2.5)
    | st.sampled_from([0.0, 0.5, 1.0, 59.0, 60.0, 61.0])
    | st.floats(55, 130)
)
calls = st.builds(
    Call,
    st.sampled_from(MODELS),
    st.sampled_from(PROJECTS),
    st.sampled_from(USERS),
    st.integers(0, 80),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), gaps, calls),
        st.tuples(st.just("acquire"), gaps, calls),
        st.tuples(st.just("settle"), gaps, st.integers(0, 30), st.integers(0, 120)),
        st.tuples(st.just("refund"), gaps, st.integers(0, 30)),
        st.tuples(st.just("limits"), limits_strategy),
        st.tuples(st.just("restore")),
    ),
    max_size=60,
)


class Run:
    """Drive a book and the reference model through the same steps."""

    def __init__(self, start: float, limits: Limits) -> None:
        self.book = QuotaBook()
        self.reference = Reference()
        self.now = start
        self.limits = limits

    def step(self, step: Step) -> None:
        kind = step[0]
        if kind == "limits":
            self.limits = step[1]
        elif kind == "restore":
            self.book = QuotaBook.restore(self.book.snapshot())
        else:
            self.now += step[1]
            getattr(self, kind)(*step[2:])
            if step[1] >= HELD_SECONDS + 1:
                assert len(self.book) <= len(SCOPES), "idle parties were kept"
        self.check_agreement()
        self.reference.check_invariant()

    def acquire(self, call: Call) -> None:
        second = int(self.now)
        expected = self.reference.full(call, self.limits, second)
        result = self.book.acquire(
            self.now, call.model, call.project, call.user,
            tokens=call.tokens, limits=self.limits,
        )  # fmt: skip
        if isinstance(result, Grant):
            assert expected == []
            assert (result.second, result.tokens) == (second, call.tokens)
            booked = Booked(result, self.now, self.limits, 1, call.tokens, call.tokens)
            self.reference.booked.append(booked)
            return
        assert expected, "a denial while every level had room"
        self.check_denial(call, result, expected)

    def check_denial(
        self, call: Call, denial: Denial, expected: list[tuple[Scope, str, bool]]
    ) -> None:
        never = [(scope, which) for scope, which, never in expected if never]
        if never:
            assert (denial.scope, denial.limit, denial.retry_after_s) == (
                *never[0], None
            )  # fmt: skip
            return
        assert (denial.scope, denial.limit) == expected[0][:2]
        assert denial.retry_after_s is not None
        self.check_retry_moment(call, denial.retry_after_s)

    def check_retry_moment(self, call: Call, retry_after: float) -> None:
        moment = self.now + retry_after
        assert self.first_second_with_room(call) == int(moment)
        assert isinstance(self.probe(call, moment), Grant)
        if retry_after > 1e-3:
            assert isinstance(self.probe(call, moment - 1e-3), Denial)

    def first_second_with_room(self, call: Call) -> int:
        second = int(self.now) + 1
        while self.reference.full(call, self.limits, second):
            second += 1
        return second

    def probe(self, call: Call, at: float) -> Grant | Denial:
        book = copy.deepcopy(self.book)
        return book.acquire(
            at, call.model, call.project, call.user,
            tokens=call.tokens, limits=self.limits,
        )  # fmt: skip

    def settle(self, index: int, real_tokens: int) -> None:
        booked = self.pick(index)
        if booked is None:
            assert not self.book.settle(self.now, 0, real_tokens)
            return
        expected = self.still_open(booked)
        assert self.book.settle(self.now, booked.grant.reservation_id, real_tokens) is (
            expected
        )
        if expected:
            booked.tokens = real_tokens
            booked.bounded_tokens = min(real_tokens, booked.grant.tokens)
            booked.open = False

    def refund(self, index: int) -> None:
        booked = self.pick(index)
        if booked is None:
            assert not self.book.refund(self.now, 0)
            return
        expected = self.still_open(booked)
        assert self.book.refund(self.now, booked.grant.reservation_id) is expected
        if expected:
            booked.requests = booked.tokens = booked.bounded_tokens = 0
            booked.open = False

    def pick(self, index: int) -> Booked | None:
        booked = self.reference.booked
        return booked[index % len(booked)] if booked else None

    def still_open(self, booked: Booked) -> bool:
        return booked.open and booked.grant.second > int(self.now) - HELD_SECONDS

    def check_agreement(self) -> None:
        second = int(self.now)
        parties = {p for b in self.reference.booked for p in b.parties()}
        for party in parties:
            usage = self.book.used(self.now, *party)
            assert usage == self.reference.used(party, second), party


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    start=st.sampled_from([0.0, 1_700_000_000.25]),
    limits=limits_strategy,
    script=steps,
)
def test_random_traffic_never_breaks_a_limit_and_matches_brute_force(
    start: float, limits: Limits, script: list[Step]
) -> None:
    run = Run(start, limits)
    for step in script:
        run.step(step)


@settings(max_examples=150, deadline=None)
@given(
    limits=limits_strategy,
    before=steps,
    after=steps,
)
def test_a_restored_book_decides_exactly_as_the_original(
    limits: Limits, before: list[Step], after: list[Step]
) -> None:
    run = Run(0.0, limits)
    for step in before:
        run.step(step)
    twin = QuotaBook.restore(run.book.snapshot())

    now, current = run.now, limits
    for step in after:
        if step[0] == "limits":
            current = step[1]
            continue
        if step[0] == "restore":
            continue
        now += step[1]
        assert act(run.book, now, current, step) == act(twin, now, current, step)
    assert comparable(run.book.snapshot()) == comparable(twin.snapshot())


def comparable(snapshot: bytes) -> dict[str, Any]:
    """Return a snapshot's content without the order of its dictionaries."""
    state: dict[str, Any] = json.loads(snapshot)
    state["parties"].sort()
    state["held"].sort()
    return state


def act(book: QuotaBook, now: float, limits: Limits, step: Step) -> object:
    kind, *args = step[0], *step[2:]
    if kind == "acquire":
        call = args[0]
        assert isinstance(call, Call)
        return book.acquire(
            now, call.model, call.project, call.user,
            tokens=call.tokens, limits=limits,
        )  # fmt: skip
    if kind == "settle":
        return book.settle(now, args[0], args[1])
    return book.refund(now, args[0])
