"""Client-side pacing: an even flow under Heap's limits per app and per identity, adapting to throttling."""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

AIM = 0.97
"""The share of a known ceiling paced: an even flow just under it fits any window that holds a request."""
LOOKBACK = 60.0
"""Seconds of accepted items over which the rate Heap accepts is measured when it throttles."""
CUT = 0.85
"""The rate kept after a throttling answer when the measured rate does not say how far to go down."""
PROBE_INTERVAL = 10.0
"""Seconds without throttling after which the rate goes up a step toward the ceiling."""
PROBE_STEP = 1.02
RECEIPT_MARGIN = 10.0
"""Seconds added to an identity window, so a request counted when it leaves still counts however late
(within the margin) Heap receives it."""
SKETCH_ROW = 1 << 18
"""Counters in each row of an identity sketch: two rows of 4-byte counters, 2 MB a bucket."""


@dataclass(frozen=True)
class IdentityLimit:
    """Heap's documented ceiling per identity: `limit` items, or requests holding it, in `seconds`."""

    limit: int
    seconds: float
    counts_requests: bool


TRACK_PER_IDENTITY = IdentityLimit(1000, 60.0, counts_requests=False)
PROPERTIES_PER_IDENTITY = IdentityLimit(30, 30.0, counts_requests=True)


class AppRate:
    """The pace of one app's requests: a token bucket whose burst is one request, at an adaptive rate.

    The rate starts at AIM of the ceiling (none: unlimited). A throttling answer pauses every request
    for Retry-After and brings the rate down to what Heap accepted over the last minute, or by CUT
    when that says nothing; each PROBE_INTERVAL without throttling raises it by PROBE_STEP, back up
    to the ceiling. Throttling of requests sent before the last cut took effect changes nothing more.
    """

    def __init__(self, items_per_minute: int | None) -> None:
        self.ceiling = items_per_minute * AIM / 60 if items_per_minute else math.inf
        self.rate = self.ceiling
        self.next_free = -math.inf
        self.paused_until = -math.inf
        self.cut_until = -math.inf
        self.changed = -math.inf
        self.first_sent: float | None = None
        self.accepted: deque[tuple[float, int]] = deque()
        self.accepted_total = 0

    def wait(self, now: float) -> float:
        """Seconds until the next request may go."""
        return max(self.next_free, self.paused_until) - now

    def take(self, units: int, now: float) -> None:
        """Spends a request of `units` items now: the next may go once they are paid for at the rate."""
        if self.first_sent is None:
            self.first_sent = now
        if self.rate < self.ceiling and now - self.changed >= PROBE_INTERVAL:
            self.rate = min(self.ceiling, self.rate * PROBE_STEP)
            self.changed = now
        self.next_free = max(self.next_free, now) + units / self.rate

    def passed(self, units: int, now: float) -> None:
        """Heap let a request of `units` items through (accepted or refused them, but did not throttle)."""
        self.accepted.append((now, units))
        self.accepted_total += units
        self._forget(now)

    def throttled(self, sent_at: float, retry_after: float | None, now: float) -> None:
        """Heap throttled a request sent at `sent_at`: pause for Retry-After, and slow down unless already done."""
        if retry_after:
            self.paused_until = max(self.paused_until, now + retry_after)
        if sent_at < self.cut_until:
            return
        measured = self.measured(now)
        if measured is not None and measured * AIM < self.rate:
            self.rate = measured * AIM
        elif math.isfinite(self.rate):
            self.rate *= CUT
        self.changed = now
        self.cut_until = max(now, self.paused_until)

    def measured(self, now: float) -> float | None:
        """Items per second Heap let through over the last LOOKBACK seconds, or None before any went."""
        self._forget(now)
        if self.first_sent is None or not self.accepted_total:
            return None
        return self.accepted_total / max(min(LOOKBACK, now - self.first_sent), 1.0)

    def _forget(self, now: float) -> None:
        accepted = self.accepted
        while accepted and accepted[0][0] <= now - LOOKBACK:
            self.accepted_total -= accepted.popleft()[1]


class IdentityCounts:
    """Counts per identity in any recent window, in fixed memory however many identities there are.

    Two consecutive buckets, each the window plus RECEIPT_MARGIN long, bound an identity's count
    in any window. Each bucket is a count-min sketch: counters in two rows indexed by parts of the
    identity's hash, an identity's count being the smaller of its two counters. Collisions can only
    make a count too high (a request waits for nothing), never too low (a request goes over a limit).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds + RECEIPT_MARGIN
        self.started = -math.inf
        self.current = self._empty()
        self.previous = self._empty()

    @staticmethod
    def cells(counts: dict[str, int]) -> list[tuple[int, int, int]]:
        """Each identity's counter in each row of a sketch (from two parts of its hash), with its count."""
        row = SKETCH_ROW
        return [
            (code % row, row + (code // row) % row, count)
            for code, count in zip(map(hash, counts), counts.values(), strict=True)
        ]

    def wait_for(self, cells: list[tuple[int, int, int]], limit: int, now: float) -> float:
        """Seconds until every identity's count fits under `limit` (0 when they fit now)."""
        self._rotate(now)
        current, previous = self.current, self.previous
        for low, high, count in cells:
            held = min(current[low] + previous[low], current[high] + previous[high])
            if held and held + count > limit:
                return self.started + self.seconds - now
        return 0.0

    def add(self, cells: list[tuple[int, int, int]]) -> None:
        """Counts a request's items under their identities' counters."""
        current = self.current
        for low, high, count in cells:
            current[low] += count
            current[high] += count

    def _rotate(self, now: float) -> None:
        elapsed = now - self.started
        if elapsed >= self.seconds:
            self.previous = self.current if elapsed < 2 * self.seconds else self._empty()
            self.current = self._empty()
            self.started = now

    @staticmethod
    def _empty() -> array[int]:
        return array("I", bytes(4 * 2 * SKETCH_ROW))


class Pacer:
    """Holds each request to one API until it fits the app's pace and its identities' limits, and learns
    from answers.

    Pacers of several APIs may share one AppRate (a ceiling for the whole app id); they then share
    the lock that guards it too.
    """

    def __init__(
        self,
        app: AppRate,
        identity_limit: IdentityLimit,
        lock: threading.Lock | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.app = app
        self.identity_limit = identity_limit
        self.identities = IdentityCounts(identity_limit.seconds)
        self.waiting = 0
        self.lock = lock or threading.Lock()

    def reserve(self, keys: Iterable[str], stop: threading.Event, deadline: float = math.inf) -> float | None:
        """Waits until a request with these items' identities may go and counts it; returns when it may go,
        or None when the sync stopped or it could not go before `deadline`."""
        counts: dict[str, int] = Counter(keys)
        units = sum(counts.values())
        if self.identity_limit.counts_requests:
            counts = dict.fromkeys(counts, 1)
        cells = self.identities.cells(counts)
        waiting = 0
        try:
            while True:
                with self.lock:
                    now = self.clock()
                    wait = max(self.app.wait(now), self.identities.wait_for(cells, self.identity_limit.limit, now))
                    if wait <= 0:
                        self.identities.add(cells)
                        self.app.take(units, now)
                        return now
                    if now + wait > deadline:
                        return None
                    self.waiting += 1 - waiting
                    waiting = 1
                if stop.wait(min(wait, 1.0)):
                    return None
        finally:
            if waiting:
                with self.lock:
                    self.waiting -= 1

    def passed(self, units: int) -> None:
        """Heap answered a request of `units` items without throttling it."""
        with self.lock:
            self.app.passed(units, self.clock())

    def throttled(self, sent_at: float, retry_after: float | None) -> None:
        """Heap throttled a request sent at `sent_at`."""
        with self.lock:
            self.app.throttled(sent_at, retry_after, self.clock())
