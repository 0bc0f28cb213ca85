"""The quota book: every rolling window of the limiter, and its reservations.

Per model, the book counts requests and tokens at three levels: the
enrollment, each project, and each user of user-attributed applications. An
acquire is admitted only when every level with a limit has room for one more
request and for the reserved tokens, and is then charged to all of them at
once; otherwise nothing is charged and the denial names the first full level.

A grant is a reservation. The router settles it to the tokens the provider
reported, or refunds it when the call failed before reaching the provider.
Reservations never settled are forgotten when their second leaves the window,
and so are parties with nothing left in their windows: memory follows the
last 61 seconds of traffic, and the clean-up costs O(1) amortised per call.

Pure logic: no I/O, no clock. The service passes `now` (wall-clock seconds)
and persists the book with `snapshot` and `QuotaBook.restore`.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from services.limiter.limits import Limits, RateLimit
from services.limiter.windows import HELD_SECONDS, RollingWindow

Scope = Literal["enrollment", "project", "user"]
LimitName = Literal["rpm", "tpm"]
PartyKey = tuple[Scope, str, str]

SNAPSHOT_VERSION = 1


class Grant(NamedTuple):
    """An admitted call: its reservation, charged at `second` to each level."""

    reservation_id: int
    second: int
    model_id: str
    project: str
    user: str | None
    tokens: int


@dataclass(frozen=True, slots=True)
class Denial:
    """A refused call: the first full level, which of its limits, and when the
    same call would fit if nothing else happened meanwhile.

    `retry_after_s` is None when the call can never fit because it alone asks
    for more than the named limit.
    """

    scope: Scope
    limit: LimitName
    retry_after_s: float | None


class Usage(NamedTuple):
    """What a party's windows hold: requests admitted and tokens charged."""

    requests: int
    tokens: int


class _Party:
    """What one party (an enrollment, a project, a user) of a model was charged."""

    __slots__ = ("key", "last_active", "requests", "tokens")

    def __init__(self, key: PartyKey, last_active: int) -> None:
        self.key = key
        self.requests = RollingWindow()
        self.tokens = RollingWindow()
        # The last second the party was created or charged: it can be
        # forgotten once that second has left the window.
        self.last_active = last_active


class _Held:
    """A reservation not yet settled or refunded."""

    __slots__ = ("grant", "parties")

    def __init__(self, grant: Grant, parties: tuple[_Party, ...]) -> None:
        self.grant = grant
        self.parties = parties


class QuotaBook:
    """Hold the windows of every party of every model, and the reservations."""

    __slots__ = ("_held", "_held_order", "_idle_order", "_next_id", "_now", "_parties")

    def __init__(self) -> None:
        self._parties: dict[PartyKey, _Party] = {}
        self._held: dict[int, _Held] = {}
        # Both queues are in time order, so pruning only ever looks at the head.
        self._held_order: deque[tuple[int, int]] = deque()
        self._idle_order: deque[tuple[int, _Party]] = deque()
        self._next_id = 1
        self._now = 0.0

    def acquire(
        self,
        now: float,
        model_id: str,
        project: str,
        user: str | None,
        *,
        tokens: int,
        limits: Limits,
    ) -> Grant | Denial:
        """Reserve one request and `tokens` at every level, or at none."""
        if tokens < 0:
            raise ValueError(f"tokens must be 0 or more, got {tokens}")
        now = self._tick(now)
        second = int(now)
        parties = self._parties_of(second, model_id, project, user)

        if not self._all_fit(second, parties, limits, tokens):
            return _deny(now, parties, limits, tokens)

        grant = Grant(self._next_id, second, model_id, project, user, tokens)
        self._next_id += 1
        self._charge(grant, parties)
        return grant

    def settle(self, now: float, reservation_id: int, real_tokens: int) -> bool:
        """Replace a reservation's tokens by the real usage, in the bucket it
        was charged to, at every level.

        Usage above the reservation is charged in full even past the limit:
        the windows then show what was really used and later calls wait for
        it. Returns False when the reservation is unknown, already closed, or
        its second has left the window (nothing is changed then).
        """
        self._tick(now)
        held = self._held.pop(reservation_id, None)
        if held is None:
            return False
        delta = real_tokens - held.grant.tokens
        second = held.grant.second
        for party in held.parties:
            if delta > 0:
                party.tokens.add(second, delta)
            else:
                party.tokens.refund(second, -delta)
        return True

    def refund(self, now: float, reservation_id: int) -> bool:
        """Give back a reservation's request and tokens at every level.

        For calls that never reached the provider: the provider counted no
        request, so neither do we. A call that reached it is settled instead.
        Returns False, changing nothing, when `settle` would.
        """
        self._tick(now)
        held = self._held.pop(reservation_id, None)
        if held is None:
            return False
        second = held.grant.second
        for party in held.parties:
            party.requests.refund(second, 1)
            party.tokens.refund(second, held.grant.tokens)
        return True

    def apply_grant(self, now: float, grant: Grant) -> bool:
        """Charge a grant decided elsewhere, without checking limits.

        For replaying a journal of grants on a restored book: the windows end
        up as if this book had admitted it. A grant whose second has left the
        window is skipped (returns False).
        """
        now = self._tick(now)
        if grant.second > int(now):
            raise ValueError(f"grant second {grant.second} is after now ({now})")
        expired = grant.second <= int(now) - HELD_SECONDS
        if expired or grant.reservation_id in self._held:
            return False
        parties = self._parties_of(
            grant.second, grant.model_id, grant.project, grant.user
        )
        self._charge(grant, parties)
        self._next_id = max(self._next_id, grant.reservation_id + 1)
        return True

    def used(self, now: float, scope: Scope, model_id: str, name: str) -> Usage:
        """Return the requests and tokens a party's windows hold at `now`.

        `name` is the project or user; "" for the enrollment.
        """
        second = int(max(now, self._now))
        party = self._parties.get((scope, model_id, name))
        if party is None:
            return Usage(0, 0)
        return Usage(party.requests.used_at(second), party.tokens.used_at(second))

    def __len__(self) -> int:
        """Return how many parties the book holds."""
        return len(self._parties)

    def snapshot(self) -> bytes:
        """Serialise the whole book to compact JSON bytes."""
        cutoff = int(self._now) - HELD_SECONDS
        parties = [
            [*party.key, party.last_active, *_windows_state(party)]
            for party in self._parties.values()
            if party.last_active > cutoff
        ]
        held = [
            [g.reservation_id, g.second, g.model_id, g.project, g.user, g.tokens]
            for h in self._held.values()
            for g in (h.grant,)
            if g.second > cutoff
        ]
        state = {
            "version": SNAPSHOT_VERSION,
            "now": self._now,
            "next_id": self._next_id,
            "parties": parties,
            "held": held,
        }
        return json.dumps(state, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, data: bytes) -> QuotaBook:
        """Rebuild a book from `snapshot` bytes; it behaves as the original."""
        state = json.loads(data)
        if state.get("version") != SNAPSHOT_VERSION:
            raise ValueError(
                f"quota snapshot version {state.get('version')!r} is not "
                f"{SNAPSHOT_VERSION}: this limiter cannot read it"
            )
        book = cls()
        book._now = state["now"]
        book._next_id = state["next_id"]
        book._restore_parties(state["parties"])
        book._restore_held(state["held"])
        return book

    def _restore_parties(self, rows: list[list[Any]]) -> None:
        rows.sort(key=lambda row: row[3])
        for scope, model_id, name, last, requests, tokens in rows:
            party = _Party((scope, model_id, name), last)
            party.requests = RollingWindow.from_state(requests)
            party.tokens = RollingWindow.from_state(tokens)
            self._parties[party.key] = party
            self._idle_order.append((party.last_active, party))

    def _restore_held(self, rows: list[list[Any]]) -> None:
        rows.sort(key=lambda row: (row[1], row[0]))
        for reservation_id, second, model_id, project, user, tokens in rows:
            grant = Grant(reservation_id, second, model_id, project, user, tokens)
            parties = self._parties_of(second, model_id, project, user)
            self._held[grant.reservation_id] = _Held(grant, parties)
            self._held_order.append((grant.second, grant.reservation_id))

    def _tick(self, now: float) -> float:
        """Move the book's clock forward (never back) and forget what expired."""
        if now < self._now:
            return self._now
        self._now = now
        cutoff = int(now) - HELD_SECONDS
        held_order = self._held_order
        while held_order and held_order[0][0] <= cutoff:
            self._held.pop(held_order.popleft()[1], None)
        idle_order = self._idle_order
        while idle_order and idle_order[0][0] <= cutoff:
            second, party = idle_order.popleft()
            if party.last_active == second:
                del self._parties[party.key]
        return now

    def _parties_of(
        self, second: int, model_id: str, project: str, user: str | None
    ) -> tuple[_Party, ...]:
        held = self._parties
        key: PartyKey = ("enrollment", model_id, "")
        enrollment = held.get(key) or self._add_party(second, key)
        key = ("project", model_id, project)
        of_project = held.get(key) or self._add_party(second, key)
        if user is None:
            return (enrollment, of_project)
        key = ("user", model_id, user)
        return (enrollment, of_project, held.get(key) or self._add_party(second, key))

    def _add_party(self, second: int, key: PartyKey) -> _Party:
        party = self._parties[key] = _Party(key, second)
        # Queued for pruning at once: a denied call charges nothing, and the
        # parties it created must not outlive the window.
        self._idle_order.append((second, party))
        return party

    def _all_fit(
        self, second: int, parties: tuple[_Party, ...], limits: Limits, tokens: int
    ) -> bool:
        return (
            _fits(parties[0], limits.enrollment, second, tokens)
            and _fits(parties[1], limits.project, second, tokens)
            and (len(parties) < 3 or _fits(parties[2], limits.user, second, tokens))
        )

    def _charge(self, grant: Grant, parties: tuple[_Party, ...]) -> None:
        reservation_id, second, _, _, _, tokens = grant
        for party in parties:
            party.requests.add(second, 1)
            party.tokens.add(second, tokens)
            if party.last_active < second:
                party.last_active = second
                self._idle_order.append((second, party))
        self._held[reservation_id] = _Held(grant, parties)
        self._held_order.append((second, reservation_id))


_SCOPES: tuple[Scope, ...] = ("enrollment", "project", "user")


def _fits(party: _Party, limit: RateLimit | None, second: int, tokens: int) -> bool:
    if limit is None:
        return True
    rpm, tpm = limit.rpm, limit.tpm
    if rpm is not None and party.requests.used_at(second) >= rpm:
        return False
    return tpm is None or party.tokens.used_at(second) + tokens <= tpm


def _windows_state(party: _Party) -> tuple[list[int], list[int]]:
    return party.requests.to_state(), party.tokens.to_state()


def _deny(
    now: float, parties: tuple[_Party, ...], limits: Limits, tokens: int
) -> Denial:
    """Name the first full level; wait until every level has room at once.

    A call that can never fit is reported first, whatever else is full, so
    that nobody is told to retry something that cannot succeed.
    """
    checks: list[tuple[Scope, LimitName, RollingWindow, int, int]] = []
    levels = (limits.enrollment, limits.project, limits.user)
    for scope, party, limit in zip(_SCOPES, parties, levels, strict=False):
        if limit is None:
            continue
        if limit.rpm is not None:
            checks.append((scope, "rpm", party.requests, 1, limit.rpm))
        if limit.tpm is not None:
            checks.append((scope, "tpm", party.tokens, tokens, limit.tpm))

    for scope, name, _, needed, allowed in checks:
        if needed > allowed:
            return Denial(scope, name, None)
    first: tuple[Scope, LimitName] | None = None
    wait = 0.0
    for scope, name, window, needed, allowed in checks:
        delay = window.retry_after(now, needed, allowed) or 0.0
        if delay > 0 and first is None:
            first = (scope, name)
        wait = max(wait, delay)
    if first is None:
        raise AssertionError("a denial needs a full level")
    return Denial(first[0], first[1], wait)
