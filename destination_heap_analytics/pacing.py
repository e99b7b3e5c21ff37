"""Client-side pacing: an even flow under Heap's limits per app and per identity, adapting to throttling."""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

AIM = 0.97
"""The share of a known ceiling paced: an even flow just under it fits any window that holds a request."""
MAX_ITEMS = 1000
"""Heap's largest bulk request."""
LOOKBACK = 60.0
"""Seconds over which the rate Heap accepts is measured when it throttles."""
CUT = 0.7
"""The rate kept after a throttling answer when the measured rate does not say to go lower."""
DEEPEST_CUT = 0.5
"""No single throttling answer takes the rate below this share of what it was."""
FLOOR_SHARE = 0.05
"""The rate never goes below this share of a known ceiling..."""
FLOOR = 10.0
"""...or, with no known ceiling, below this many items a second."""
PROBE_INTERVAL = 10.0
"""Seconds over which the rate grows by FAST (below the knee) or SLOW (above it) while Heap does not throttle."""
FAST = 1.10
SLOW = 1.02
KNEE = 0.9
"""The share of the rate Heap last throttled at up to which the rate grows FAST: a throttle far below the
ceiling (a spike, a burst elsewhere) is soon forgotten, while a real lower limit is probed gently."""
THROTTLED_REQUEST_SHARE = 0.01
"""Once Heap has throttled, a request holds at most this share of a minute at the current pace: however Heap
counts (a fixed window holds many small requests), one request that does not fit costs little, and a
window's last room is not left empty for want of a request small enough to fill it."""
RECEIPT_MARGIN = 10.0
"""Seconds added to an identity window, so a request counted when it leaves still counts however late
(within the margin) Heap receives it."""
EPSILON = 1e-6
"""A wait this short is no wait: clocks and float sums are not exact to it."""
ROW_BITS = 18
SKETCH_ROW = 1 << ROW_BITS
"""Counters in each row of an identity sketch: two rows of 4-byte counters, 2 MB a bucket."""
ROW_MASK = SKETCH_ROW - 1


@dataclass(frozen=True)
class IdentityLimit:
    """Heap's documented ceiling per identity: `limit` items, or requests holding it, in `seconds`."""

    limit: int
    seconds: float
    counts_requests: bool


TRACK_PER_IDENTITY = IdentityLimit(1000, 60.0, counts_requests=False)
PROPERTIES_PER_IDENTITY = IdentityLimit(30, 30.0, counts_requests=True)


def largest_request(items_per_minute: int | None) -> int:
    """The most items one request may hold under a ceiling: a request paid for at AIM of the ceiling still
    fits any minute with the rest of the minute's flow (AIM of it plus one request stays under it)."""
    if not items_per_minute:
        return MAX_ITEMS
    return max(1, min(MAX_ITEMS, int(items_per_minute * (1 - AIM))))


class AppRate:
    """The pace of one app's requests: a token bucket that holds one request's worth, at an adaptive rate.

    A request takes its items' tokens before it goes; the bucket refills at the rate, up to the
    largest request, so any minute holds at most AIM of the ceiling plus one request, which stays
    under the ceiling. The rate starts at AIM of the ceiling (none: unlimited). A throttling answer
    pauses every request for Retry-After and cuts the rate: to CUT of it, lower when the rate Heap
    accepted while requests were under way says so, but never below DEEPEST_CUT of it or the floor.
    Throttling of requests sent before the last cut took effect brings no news. While Heap does not
    throttle, the rate grows with elapsed time, fast up to KNEE of where it was throttled and slowly
    beyond, back up to the ceiling.
    """

    def __init__(self, items_per_minute: int | None) -> None:
        self.limit = items_per_minute
        self.burst = largest_request(items_per_minute)
        if items_per_minute:
            self.ceiling = min(items_per_minute * AIM, items_per_minute - self.burst) / 60
            self.floor = max(self.ceiling * FLOOR_SHARE, 1 / 60)
        else:
            self.ceiling, self.floor = math.inf, FLOOR
        self.rate = self.ceiling
        self.throttled_at = math.inf
        self.throttles = 0
        self.tat = -math.inf
        self.paused_until = -math.inf
        self.cut_until = -math.inf
        self.changed = -math.inf
        self.accepted: deque[tuple[float, int]] = deque()
        self.accepted_total = 0
        self.active = 0
        self.busy_since = 0.0
        self.busy: deque[tuple[float, float]] = deque()

    def wait(self, units: int, now: float) -> float:
        """Seconds until a request of `units` items may go."""
        self._grow(now)
        ready = max(self.tat, now) + (units - self.burst) / self.rate
        return max(ready, self.paused_until) - now

    def request_items(self) -> int:
        """The most items a request holds now: the largest request until Heap throttles, then
        THROTTLED_REQUEST_SHARE of a minute at the current pace."""
        if not (self.throttles and math.isfinite(self.rate)):
            return self.burst
        return max(1, min(self.burst, int(self.rate * 60 * THROTTLED_REQUEST_SHARE)))

    def take(self, units: int, now: float) -> None:
        """Spends a request of `units` items now."""
        self.tat = max(self.tat, now) + units / self.rate

    def begin(self, now: float) -> None:
        """A request starts waiting for its turn or its answer: Heap's pace can be measured while one is."""
        if not self.active:
            self.busy_since = now
        self.active += 1

    def end(self, now: float) -> None:
        """A request has its answer (or was given up)."""
        self.active -= 1
        if not self.active:
            self.busy.append((self.busy_since, now))

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
        self._grow(now)
        rate = self.rate
        measured = self.measured(now)
        cut = rate * CUT
        if measured is not None:
            cut = min(cut, measured * AIM)
        if math.isfinite(rate):
            cut = max(cut, rate * DEEPEST_CUT)
        self.rate = max(cut, self.floor)
        self.throttled_at = rate
        self.throttles += 1
        self.changed = now
        self.cut_until = max(now, self.paused_until)

    def measured(self, now: float) -> float | None:
        """Items per second Heap let through over the last LOOKBACK seconds, counting only the time some
        request was under way (a quiet source says nothing of Heap's pace), or None before any went."""
        self._forget(now)
        since = now - LOOKBACK
        busy = sum(end - max(start, since) for start, end in self.busy)
        if self.active:
            busy += now - max(self.busy_since, since)
        if not self.accepted_total or busy <= 0:
            return None
        return self.accepted_total / busy

    def _grow(self, now: float) -> None:
        rate = self.rate
        if rate >= self.ceiling:
            return
        steps = (now - self.changed) / PROBE_INTERVAL
        knee = KNEE * self.throttled_at
        if rate < knee:
            to_knee = math.log(knee / rate) / math.log(FAST)
            if steps <= to_knee:
                rate *= FAST**steps
            else:
                rate = knee * SLOW ** (steps - to_knee)
        else:
            rate *= SLOW**steps
        self.rate = min(rate, self.ceiling)
        self.changed = now

    def _forget(self, now: float) -> None:
        since = now - LOOKBACK
        accepted = self.accepted
        while accepted and accepted[0][0] <= since:
            self.accepted_total -= accepted.popleft()[1]
        busy = self.busy
        while busy and busy[0][1] <= since:
            busy.popleft()


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
        return [
            (code & ROW_MASK, SKETCH_ROW | (code >> ROW_BITS) & ROW_MASK, count)
            for code, count in zip(map(hash, counts), counts.values(), strict=True)
        ]

    def wait_for(self, cells: list[tuple[int, int, int]], limit: int, now: float) -> float:
        """Seconds until every identity's count fits under `limit` (0 when they fit now).

        An identity's count is the smaller of its two counters, so its first row's counter is read
        first and, when that one leaves room, the second is not read at all.
        """
        self._rotate(now)
        current, previous = self.current, self.previous
        for low, high, count in cells:
            held_low = current[low] + previous[low]
            if held_low + count > limit:
                held_high = current[high] + previous[high]
                if held_high + count > limit and held_low and held_high:
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


class WaitClock:
    """Wall time during which at least one request waited for its turn: concurrent waits count once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.waiting = 0
        self.since = 0.0
        self.total = 0.0

    def begin(self) -> None:
        """A request starts waiting."""
        with self.lock:
            if not self.waiting:
                self.since = self.clock()
            self.waiting += 1

    def end(self) -> None:
        """A request stops waiting."""
        with self.lock:
            self.waiting -= 1
            if not self.waiting:
                self.total += self.clock() - self.since

    def seconds(self) -> float:
        """The wall time waited so far, a wait under way included."""
        with self.lock:
            return self.total + (self.clock() - self.since if self.waiting else 0.0)


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
        waits: WaitClock | None = None,
    ) -> None:
        self.clock = clock
        self.app = app
        self.identity_limit = identity_limit
        self.identities = IdentityCounts(identity_limit.seconds)
        self.waiting = 0
        self.waits = waits or WaitClock(clock)
        self.lock = lock or threading.Lock()

    def reserve(self, keys: Sequence[str], stop: threading.Event, deadline: float = math.inf) -> float | None:
        """Waits until a request with these items' identities may go and counts it; returns when it may go,
        or None when the sync stopped or it could not go before `deadline`. A request that reserved must
        be followed by `passed`, `throttled` or `gave_up`."""
        units = len(keys)
        counts = dict.fromkeys(keys, 1) if self.identity_limit.counts_requests else Counter(keys)
        cells = self.identities.cells(counts)
        waiting = False
        with self.lock:
            self.app.begin(self.clock())
        try:
            while True:
                with self.lock:
                    now = self.clock()
                    wait = max(
                        self.app.wait(units, now), self.identities.wait_for(cells, self.identity_limit.limit, now)
                    )
                    if wait <= EPSILON:
                        self.identities.add(cells)
                        self.app.take(units, now)
                        return now
                    if now + wait > deadline:
                        self.app.end(now)
                        return None
                    if not waiting:
                        waiting = True
                        self.waiting += 1
                        self.waits.begin()
                if stop.wait(min(wait, 1.0)):
                    with self.lock:
                        self.app.end(self.clock())
                    return None
        finally:
            if waiting:
                with self.lock:
                    self.waiting -= 1
                self.waits.end()

    def passed(self, units: int) -> None:
        """Heap answered a request of `units` items without throttling it."""
        with self.lock:
            now = self.clock()
            self.app.passed(units, now)
            self.app.end(now)

    def throttled(self, sent_at: float, retry_after: float | None) -> None:
        """Heap throttled a request sent at `sent_at`."""
        with self.lock:
            now = self.clock()
            self.app.throttled(sent_at, retry_after, now)
            self.app.end(now)

    def slowed_to(self) -> float | None:
        """Items a minute this API is paced at, when Heap's throttling brought it under its ceiling."""
        rate = self.app.rate
        return rate * 60 if rate < self.app.ceiling else None

    def gave_up(self) -> None:
        """A request that reserved got no answer that says anything of Heap's pace (a fault, a stop)."""
        with self.lock:
            self.app.end(self.clock())
