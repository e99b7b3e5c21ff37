"""Client-side pacing under Heap's documented rate limits, slowed by throttling answers."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

TRACK_PER_IDENTITY = (1000, 60.0)
PROPERTIES_PER_IDENTITY = (30, 30.0)
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


class RateLimiter:
    """Keeps requests under a per-app item ceiling and a per-key ceiling, each a sliding window.

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
        self.key_limit, self.key_seconds = key_limit
        self.key_counts_requests = key_counts_requests
        self.keys: dict[str, SlidingWindow] = {}
        self.clock = clock
        self.scale = 1.0
        self.paused_until = 0.0
        self.lock = threading.Lock()
        self.next_sweep = 0.0

    def reserve(self, keys: Iterable[str], stop: threading.Event) -> tuple[list[list[float]], float]:
        """Waits until a request with these items' keys may go, reserves it; returns entries and seconds waited."""
        counts: dict[str, int] = Counter(keys)
        units = sum(counts.values())
        if self.key_counts_requests:
            counts = dict.fromkeys(counts, 1)
        started = self.clock()
        while True:
            with self.lock:
                now = self.clock()
                wait = self._wait(counts, units, now)
                if wait <= 0:
                    entries = self._add(counts, units, now)
                    return entries, now - started
            if stop.wait(min(wait, 1.0)):
                return [], self.clock() - started

    def settle(self, entries: list[list[float]]) -> None:
        """Moves a request's entries to the time Heap answered, which is never before Heap counted it."""
        now = self.clock()
        with self.lock:
            for entry in entries:
                entry[0] = now

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

    def _wait(self, counts: dict[str, int], units: float, now: float) -> float:
        wait = self.paused_until - now
        wait = max(wait, self.app.wait_for(units, self.app_limit * self.scale, now))
        key_limit = self.key_limit * self.scale
        for key, count in counts.items():
            window = self.keys.get(key)
            if window is not None:
                wait = max(wait, window.wait_for(count, key_limit, now))
        return wait

    def _add(self, counts: dict[str, int], units: float, now: float) -> list[list[float]]:
        entries = [self.app.add(units, now)]
        for key, count in counts.items():
            window = self.keys.get(key)
            if window is None:
                window = self.keys[key] = SlidingWindow(self.key_seconds)
            entries.append(window.add(count, now))
        if now >= self.next_sweep:
            self._sweep(now)
        return entries

    def _sweep(self, now: float) -> None:
        for key in [
            key for key, window in self.keys.items() if window.entries and window.entries[-1][0] <= now - window.seconds
        ]:
            del self.keys[key]
        self.next_sweep = now + self.key_seconds
