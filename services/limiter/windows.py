"""Exact rolling 60-second windows for one counter: requests or tokens.

A window remembers what one party was charged, in one-second buckets kept in
a ring, with a running total. The limiter's quota book holds two windows per
party (requests and tokens) and asks them for room, charges them, and takes
charges back when a reservation is settled or refunded.

Time is an explicit argument everywhere: float seconds of wall-clock time,
never negative, because windows outlive a process and move between replicas.
A time earlier than one the window has already seen counts as that newest
second, so a clock stepping back can never release charges early.
"""

from __future__ import annotations

import math
from itertools import chain, compress

WINDOW_S = 60
# A charge made anywhere inside second s is held until second s + 61 begins,
# so between 60 and 61 seconds. Holding it only 60 buckets would release a
# charge made at s + 0.9 at s + 60.0, and the limit would then fail over the
# real interval [s + 0.9, s + 60.9). The price is at most one second of delay.
HELD_SECONDS = WINDOW_S + 1


class RollingWindow:
    """Count one quantity charged during the last 60 seconds, per second."""

    __slots__ = ("_buckets", "_newest", "total")

    def __init__(self) -> None:
        self._buckets = [0] * HELD_SECONDS
        self._newest = 0
        self.total = 0

    @property
    def newest(self) -> int:
        """Return the latest second this window has moved to."""
        return self._newest

    def used(self, now: float) -> int:
        """Return what the window holds at `now`."""
        return self.used_at(int(now))

    def used_at(self, second: int) -> int:
        """Return what the window holds during `second`."""
        if second > self._newest:
            self.advance(second)
        return self.total

    def room(self, now: float, limit: int) -> int:
        """Return how much more fits under `limit` at `now` (negative if over)."""
        return limit - self.used_at(int(now))

    def charge(self, now: float, amount: int) -> int:
        """Add `amount` at `now` and return the second it was charged to."""
        self.advance(int(now))
        second = self._newest
        self._buckets[second % HELD_SECONDS] += amount
        self.total += amount
        return second

    def holds(self, second: int) -> bool:
        """Tell whether the bucket of `second` is still inside the window."""
        return self._newest - HELD_SECONDS < second <= self._newest

    def add(self, at_second: int, amount: int) -> int:
        """Add `amount` to the bucket of `at_second`; return what was added.

        A later second moves the window there first; nothing is added once
        the bucket has left the window.
        """
        if at_second > self._newest:
            self.advance(at_second)
        elif at_second <= self._newest - HELD_SECONDS:
            return 0
        self._buckets[at_second % HELD_SECONDS] += amount
        self.total += amount
        return amount

    def refund(self, at_second: int, amount: int) -> int:
        """Take up to `amount` back from the bucket of `at_second`.

        Return what was taken: never more than the bucket holds, and nothing
        once the bucket has left the window.
        """
        if not self.holds(at_second):
            return 0
        index = at_second % HELD_SECONDS
        taken = min(amount, self._buckets[index])
        self._buckets[index] -= taken
        self.total -= taken
        return taken

    def retry_after(self, now: float, needed: int, limit: int) -> float | None:
        """Return the seconds until `needed` fits under `limit`, if nothing else
        is charged meanwhile; 0.0 if it fits now.

        None means it never fits: `needed` alone is larger than `limit`.
        """
        if needed > limit:
            return None
        self.advance(int(now))
        excess = self.total + needed - limit
        if excess <= 0:
            return 0.0
        for second in range(self._newest - WINDOW_S, self._newest + 1):
            excess -= self._buckets[second % HELD_SECONDS]
            if excess <= 0:
                return delay_until(now, second + HELD_SECONDS)
        raise AssertionError("a window's total is the sum of its buckets")

    def advance(self, second: int) -> None:
        """Move the window to `second`, dropping buckets that leave it."""
        newest = self._newest
        if second <= newest:
            return
        self._newest = second
        if self.total == 0:
            return
        if second - newest >= HELD_SECONDS:
            self._buckets = [0] * HELD_SECONDS
            self.total = 0
            return
        buckets = self._buckets
        total = self.total
        for passing in range(newest + 1, second + 1):
            index = passing % HELD_SECONDS
            total -= buckets[index]
            buckets[index] = 0
        self.total = total

    def to_state(self) -> list[int]:
        """Return the newest second then (second, amount) pairs of the
        non-empty buckets, oldest first."""
        newest = self._newest
        if not self.total:
            return [newest]
        start = (newest + 1) % HELD_SECONDS
        oldest_first = self._buckets[start:] + self._buckets[:start]
        # Built by C iterators: snapshots walk every window of the book.
        seconds = compress(range(newest - WINDOW_S, newest + 1), oldest_first)
        amounts = filter(None, oldest_first)
        return [newest, *chain.from_iterable(zip(seconds, amounts, strict=True))]

    @classmethod
    def from_state(cls, state: list[int]) -> RollingWindow:
        """Rebuild a window from what `to_state` returned."""
        window = cls()
        window._newest = state[0]
        buckets = window._buckets
        for position in range(1, len(state), 2):
            buckets[state[position] % HELD_SECONDS] = state[position + 1]
            window.total += state[position + 1]
        return window


def delay_until(now: float, moment: float) -> float:
    """Return the smallest delay found such that `now + delay >= moment`.

    Plain subtraction can land a hair early after rounding, and a client that
    retries exactly on time must find the room there.
    """
    delay = moment - now
    while now + delay < moment:
        delay = math.nextafter(delay, math.inf)
    return delay
