"""The rate limiter keeps sliding-window ceilings per app and per key, and adapts to throttling."""

import threading

from destination_heap_analytics.pacing import RateLimiter, SlidingWindow


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class AdvancingStop(threading.Event):
    """A stop event whose waits advance the fake clock instead of sleeping."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.slept = 0.0

    def wait(self, timeout=None):
        self.clock.now += timeout
        self.slept += timeout
        return False


def test_window_tells_how_long_until_units_fit():
    window = SlidingWindow(60.0)
    window.add(600, 0.0)
    window.add(400, 10.0)
    assert window.wait_for(0, 1000, 20.0) == 0.0
    assert window.wait_for(500, 1000, 20.0) == 40.0
    assert window.wait_for(900, 1000, 20.0) == 50.0
    assert window.wait_for(500, 1000, 60.0) == 0.0


def test_app_ceiling_spaces_requests_by_the_window():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    limiter = RateLimiter(2000, (10**9, 60.0), key_counts_requests=False, clock=clock)
    for _ in range(2):
        entries, waited = limiter.reserve([str(n) for n in range(1000)], stop)
        assert waited == 0
        limiter.settle(entries)
    entries, waited = limiter.reserve([str(n) for n in range(1000)], stop)
    assert 59.0 <= waited <= 61.0


def test_per_key_ceiling_for_property_apis_counts_requests():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    limiter = RateLimiter(10**9, (30, 30.0), key_counts_requests=True, clock=clock)
    for _ in range(30):
        limiter.reserve(["same-user"], stop)
    assert stop.slept == 0
    _, waited = limiter.reserve(["same-user"], stop)
    assert waited >= 29.0
    _, waited = limiter.reserve(["another-user"], stop)
    assert waited == 0


def test_throttling_pauses_and_lowers_the_ceiling_then_recovers():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    limiter = RateLimiter(1000, (10**9, 60.0), key_counts_requests=False, clock=clock)
    limiter.throttled(5.0)
    assert limiter.scale < 1.0
    _, waited = limiter.reserve(["a"], stop)
    assert waited >= 5.0
    for _ in range(100):
        limiter.answered()
    assert limiter.scale == 1.0


def test_settle_moves_entries_to_the_answer_time():
    clock = FakeClock()
    limiter = RateLimiter(1000, (10**9, 60.0), key_counts_requests=False, clock=clock)
    entries, _ = limiter.reserve(["a"] * 1000, AdvancingStop(clock))
    clock.now += 3.0
    limiter.settle(entries)
    assert all(entry[0] == clock.now for entry in entries)
