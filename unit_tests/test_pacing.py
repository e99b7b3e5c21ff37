"""The rate limiter keeps sliding-window ceilings per app and per key, and adapts to throttling."""

import threading
import time

from destination_heap_analytics.pacing import RECEIPT_MARGIN, KeyBuckets, RateLimiter, SlidingWindow


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
        entry, waited = limiter.reserve([str(n) for n in range(1000)], stop)
        assert waited == 0
        limiter.settle(entry)
    entry, waited = limiter.reserve([str(n) for n in range(1000)], stop)
    assert 59.0 <= waited <= 61.0


def test_per_key_ceiling_for_property_apis_counts_requests():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    limiter = RateLimiter(10**9, (30, 30.0), key_counts_requests=True, clock=clock)
    for _ in range(30):
        limiter.reserve(["same-user"], stop)
    assert stop.slept == 0
    _, waited = limiter.reserve(["same-user"], stop)
    assert 30.0 <= waited <= 2 * (30.0 + RECEIPT_MARGIN)
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


def test_settle_moves_the_entry_to_the_answer_time():
    clock = FakeClock()
    limiter = RateLimiter(1000, (10**9, 60.0), key_counts_requests=False, clock=clock)
    entry, _ = limiter.reserve(["a"] * 1000, AdvancingStop(clock))
    clock.now += 3.0
    limiter.settle(entry)
    assert entry[0] == clock.now


def test_key_buckets_bound_every_recent_window_and_forget_old_ones():
    buckets = KeyBuckets(60.0)
    assert buckets.wait_for({"a": 600}, 1000, 0.0) == 0.0
    buckets.add({"a": 600})
    assert buckets.wait_for({"a": 400, "b": 900}, 1000, 30.0) == 0.0
    buckets.add({"a": 400})
    wait = buckets.wait_for({"a": 1}, 1000, 50.0)
    assert wait == 60.0 + RECEIPT_MARGIN - 50.0
    assert buckets.wait_for({"a": 1}, 1000, 50.0 + wait) > 0, "the previous bucket still counts"
    assert buckets.wait_for({"a": 1}, 1000, 2 * (60.0 + RECEIPT_MARGIN) + 1) == 0.0


def test_waiting_counts_senders_held_by_the_limiter():
    limiter = RateLimiter(1000, (10**9, 60.0), key_counts_requests=False)
    limiter.reserve(["a"] * 1000, threading.Event())
    stop = threading.Event()
    held = threading.Thread(target=limiter.reserve, args=(["b"], stop))
    held.start()
    deadline = time.monotonic() + 5
    while limiter.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert limiter.waiting == 1
    stop.set()
    held.join(5)
    assert limiter.waiting == 0
