"""Client-side pacing under Heap's documented rate limits, slowed by throttling answers."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

TRACK_PER_IDENTITY = (1000, 60.0)
PROPERTIES_PER_IDENTITY = (30, 30.0)
RECEIPT_MARGIN = 10.0
MIN_SCALE = 0.1
SLOWDOWN = 0.7
RECOVERY = 0.02


class SlidingWindow:
    """Counts units sent in the last `seconds`; an entry's time may be moved later once Heap answers."""

    __slots__ = ("entries", "seconds", "total")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.entries: deque[list[float]] = deque()
        self.total = 0.0

    def prune(self, now: float) -> None:
        """Forgets entries older than the window."""
        entries = self.entries
        while entries and entries[0][0] <= now - self.seconds:
            self.total -= entries.popleft()[1]

    def wait_for(self, units: float, limit: float, now: float) -> float:
        """Seconds until `units` more fit under `limit` (0 when they fit now, or the window is empty)."""
        self.prune(now)
        excess = self.total + units - limit
        if excess <= 0 or not self.entries:
            return 0.0
        for entry_time, count in self.entries:
            excess -= count
            if excess <= 0:
                return entry_time + self.seconds - now
        return self.entries[-1][0] + self.seconds - now

    def add(self, units: float, now: float) -> list[float]:
        """Records units sent now; the returned entry can be moved to the answer's time."""
        entry = [now, units]
        self.entries.append(entry)
        self.total += units
        return entry


class KeyBuckets:
    """Per-key counts in two consecutive buckets; their sum bounds a key's count in any recent window.

    A bucket is the window plus a margin, so a request counted when it was reserved still
    counts however late (within the margin) Heap receives it. Plain dicts keep the per-item
    cost of a check and an update to two lookups.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds + RECEIPT_MARGIN
        self.started = float("-inf")
        self.current: dict[str, int] = {}
        self.previous: dict[str, int] = {}

    def wait_for(self, counts: dict[str, int], limit: float, now: float) -> float:
        """Seconds until every key's count fits under `limit` (0 when they fit now)."""
        self._rotate(now)
        current, previous = self.current.get, self.previous.get
        for key, count in counts.items():
            if current(key, 0) + previous(key, 0) + count > limit and (current(key, 0) or previous(key, 0)):
                return self.started + self.seconds - now
        return 0.0

    def add(self, counts: dict[str, int]) -> None:
        """Counts a request's items under their keys."""
        current = self.current
        get = current.get
        for key, count in counts.items():
            current[key] = get(key, 0) + count

    def _rotate(self, now: float) -> None:
        elapsed = now - self.started
        if elapsed >= self.seconds:
            self.previous = self.current if elapsed < 2 * self.seconds else {}
            self.current = {}
            self.started = now


class RateLimiter:
    """Keeps requests under a per-app item ceiling (a sliding window) and a per-key ceiling.

    A throttling answer pauses every sender for Retry-After and lowers the ceilings; each
    answer that is not throttled raises them back a little, up to the configured limit.
    """

    def __init__(
        self,
        items_per_minute: int,
        key_limit: tuple[int, float],
        key_counts_requests: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app_limit = items_per_minute
        self.app = SlidingWindow(60.0)
        self.key_limit = key_limit[0]
        self.keys = KeyBuckets(key_limit[1])
        self.key_counts_requests = key_counts_requests
        self.clock = clock
        self.scale = 1.0
        self.paused_until = 0.0
        self.waiting = 0
        self.lock = threading.Lock()

    def reserve(self, keys: Iterable[str], stop: threading.Event) -> tuple[list[float], float]:
        """Waits until a request with these items' keys may go, reserves it; returns its entry and seconds waited."""
        counts: dict[str, int] = Counter(keys)
        units = sum(counts.values())
        if self.key_counts_requests:
            counts = dict.fromkeys(counts, 1)
        started = self.clock()
        waiting = 0
        while True:
            with self.lock:
                now = self.clock()
                wait = max(
                    self.paused_until - now,
                    self.app.wait_for(units, self.app_limit * self.scale, now),
                    self.keys.wait_for(counts, self.key_limit * self.scale, now),
                )
                if wait <= 0:
                    self.keys.add(counts)
                    self.waiting -= waiting
                    return self.app.add(units, now), now - started
                self.waiting += 1 - waiting
                waiting = 1
            if stop.wait(min(wait, 1.0)):
                with self.lock:
                    self.waiting -= waiting
                return [], self.clock() - started

    def settle(self, entry: list[float]) -> None:
        """Moves a request's entry to the time Heap answered, which is never before Heap counted it."""
        if entry:
            with self.lock:
                entry[0] = self.clock()

    def throttled(self, retry_after: float | None) -> None:
        """Heap said slow down: pause everyone for Retry-After and lower the ceilings."""
        with self.lock:
            self.scale = max(MIN_SCALE, self.scale * SLOWDOWN)
            if retry_after:
                self.paused_until = max(self.paused_until, self.clock() + retry_after)

    def answered(self) -> None:
        """An answer that was not throttling: let the ceilings recover a step."""
        if self.scale < 1.0:
            with self.lock:
                self.scale = min(1.0, self.scale + RECOVERY)
