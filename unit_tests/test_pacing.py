"""Pacing: an even flow per app, per-identity limits in fixed memory, and adapting to throttling.

The simulations run the pacer in fake time against the sandbox's own rate-limit windows (the
sandbox's code, not the connector's), one sender, answers without latency.
"""

import itertools
import math
import random
import threading
import time
import tracemalloc

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from destination_heap_analytics.pacing import (
    AIM,
    DEEPEST_CUT,
    FLOOR,
    FLOOR_SHARE,
    PROBE_INTERVAL,
    PROPERTIES_PER_IDENTITY,
    RECEIPT_MARGIN,
    TRACK_PER_IDENTITY,
    AppRate,
    IdentityCounts,
    IdentityLimit,
    Pacer,
    WaitClock,
    largest_request,
)
from integration_tests.heap_sandbox import Window

NO_IDENTITY_LIMIT = IdentityLimit(10**9, 60.0, counts_requests=False)


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

    def wait(self, timeout=None):
        self.clock.now += timeout
        return False


def simulate(configured, window, seconds, sizes=lambda: 1000):
    """Sends requests as fast as the pacer lets one sender for `seconds` against a server counting
    with `window`; returns (items accepted after the first window per second, share throttled)."""
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(configured), NO_IDENTITY_LIMIT, clock=clock)
    start = clock.now
    window.origin = start + 0.37
    accepted_late = requests = throttled = 0
    while clock.now < start + seconds:
        units = sizes()
        sent_at = pacer.reserve(["k"] * units, stop)
        requests += 1
        wait = window.wait(units, sent_at)
        if wait:
            throttled += 1
            pacer.throttled(sent_at, math.ceil(wait))
            stop.wait(math.ceil(wait))
            continue
        window.add(units, sent_at)
        pacer.passed(units)
        if sent_at >= start + window.seconds:
            accepted_late += units
    return accepted_late / (clock.now - start - window.seconds), throttled / requests


@pytest.mark.parametrize(
    ("seconds", "fixed", "share", "throttled"),
    [(5.0, False, 0.95, 0.01), (60.0, False, 0.95, 0.01), (10.0, True, 0.90, 0.02)],
)
def test_a_known_limit_is_used_without_throttling_however_heap_counts_it(seconds, fixed, share, throttled):
    limit = 60_000
    window = Window(int(limit * seconds / 60), seconds, fixed, 0.0)
    rate, throttled_share = simulate(limit, window, 600)
    assert rate / (limit / 60) >= share
    assert throttled_share <= throttled


def test_any_window_sees_at_most_the_pace_over_it_plus_one_request():
    rng = random.Random(7)
    limit = 60_000
    for seconds in (1.0, 5.0, 60.0):
        window = Window(int(limit / 60 * AIM * seconds) + 1000, seconds, False, 0.0)
        _, throttled_share = simulate(limit, window, 300, sizes=lambda: rng.randint(1, 1000))
        assert throttled_share == 0


@pytest.mark.parametrize(("seconds", "fixed"), [(60.0, False), (10.0, True)])
def test_when_heap_allows_half_the_configured_limit_the_pacer_finds_it(seconds, fixed):
    configured = 60_000
    real = configured // 2
    window = Window(int(real * seconds / 60), seconds, fixed, 0.0)
    rate, throttled_share = simulate(configured, window, 900)
    assert rate / (real / 60) >= 0.80
    assert throttled_share <= 0.15


@pytest.mark.parametrize("per_minute", [15_000, 3_000, 500, 40])
def test_no_minute_holds_more_than_the_ceiling_and_no_request_more_than_fits(per_minute):
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(per_minute), NO_IDENTITY_LIMIT, clock=clock)
    burst = pacer.app.burst
    assert burst == largest_request(per_minute) <= per_minute * (1 - AIM) + 1
    window = Window(per_minute, 60.0, False, 0.0)
    rng = random.Random(per_minute)
    while clock.now < 1000.0 + 600:
        units = rng.randint(1, burst)
        sent_at = pacer.reserve(["k"] * units, stop)
        assert window.wait(units, sent_at) == 0, f"{units} items at {sent_at - 1000:.1f}s would pass {per_minute}/min"
        window.add(units, sent_at)
        pacer.passed(units)
    assert window.total >= 0.9 * per_minute, "the pace still uses the minute"


def test_one_early_throttle_is_forgotten_within_two_minutes():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(15_000), NO_IDENTITY_LIMIT, clock=clock)
    pacer.passed(3) if pacer.reserve(["k"] * 3, stop) else None
    clock.now += 5.0
    pacer.throttled(pacer.reserve(["k"] * 3, stop), 1.0)
    ceiling = pacer.app.ceiling
    assert DEEPEST_CUT * ceiling <= pacer.app.rate < ceiling
    start = clock.now
    sent = []
    while clock.now < start + 180:
        sent_at = pacer.reserve(["k"] * pacer.app.burst, stop)
        pacer.passed(pacer.app.burst)
        sent.append(sent_at)
    late = [t for t in sent if start + 120 <= t < start + 180]
    assert len(late) * pacer.app.burst / 60 >= 0.9 * ceiling


def test_throttling_never_takes_the_rate_below_its_floor():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(15_000), NO_IDENTITY_LIMIT, clock=clock)
    for _ in range(50):
        sent_at = pacer.reserve(["k"] * 10, stop)
        clock.now += 1.0
        pacer.throttled(sent_at, 0.0)
    assert pacer.app.rate == pytest.approx(pacer.app.ceiling * FLOOR_SHARE)
    unlimited = Pacer(AppRate(None), NO_IDENTITY_LIMIT, clock=clock)
    rates = []
    for _ in range(50):
        sent_at = unlimited.reserve(["k"] * 10, stop)
        clock.now += 0.05
        unlimited.passed(10)
        sent_at = unlimited.reserve(["k"] * 10, stop)
        clock.now += 0.05
        unlimited.throttled(sent_at, 0.0)
        rates.append(unlimited.app.rate)
    assert min(rates) == FLOOR


def test_a_quiet_source_says_nothing_of_what_heap_accepts():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(None), NO_IDENTITY_LIMIT, clock=clock)
    for _ in range(10):
        pacer.reserve(["k"] * 5, stop)
        clock.now += 0.05
        pacer.passed(5)
        clock.now += 10.0
    assert pacer.app.measured(clock.now) == pytest.approx(50 / 0.5), "items per second while a request was out"


def test_without_a_ceiling_nothing_waits_until_heap_throttles():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(None), PROPERTIES_PER_IDENTITY, clock=clock)
    for n in range(1000):
        pacer.reserve([f"user{n}-{i}" for i in range(1000)], stop)
    assert clock.now == 1000.0


def test_throttling_pauses_for_retry_after_and_cuts_the_rate_once_per_news():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(60_000), NO_IDENTITY_LIMIT, clock=clock)
    sent = [pacer.reserve(["k"] * 1000, stop) for _ in range(3)]
    rate = pacer.app.rate
    pacer.throttled(sent[2], 5.0)
    cut = pacer.app.rate
    assert cut < rate
    pacer.throttled(sent[1], 5.0)
    assert pacer.app.rate == cut, "a request sent before the cut brings no news"
    before = clock.now
    pacer.reserve(["k"], stop)
    assert clock.now - before >= 5.0


def test_after_a_cut_the_rate_probes_back_up_to_the_ceiling():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(60_000), NO_IDENTITY_LIMIT, clock=clock)
    pacer.throttled(pacer.reserve(["k"] * 1000, stop), None)
    assert pacer.app.rate < pacer.app.ceiling
    probes = 0
    while pacer.app.rate < pacer.app.ceiling:
        clock.now += PROBE_INTERVAL
        pacer.reserve(["k"], stop)
        probes += 1
    assert probes > 3, "the way back up is gradual"
    assert pacer.app.rate == pytest.approx(1000 * AIM)


def test_a_reservation_that_cannot_go_before_the_deadline_gives_up_at_once():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(600), NO_IDENTITY_LIMIT, clock=clock)
    assert pacer.app.burst == 18
    pacer.reserve(["k"] * 18, stop)
    assert pacer.reserve(["k"] * 18, stop, deadline=clock.now + 1.0) is None
    assert clock.now == 1000.0
    assert pacer.reserve(["k"] * 18, stop, deadline=clock.now + 20.0) is not None


def test_per_identity_limit_for_property_apis_counts_requests():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(None), PROPERTIES_PER_IDENTITY, clock=clock)
    for _ in range(30):
        pacer.reserve(["same-user"], stop)
    assert clock.now == 1000.0
    pacer.reserve(["same-user"], stop)
    assert 30.0 <= clock.now - 1000.0 <= 2 * (30.0 + RECEIPT_MARGIN)
    before = clock.now
    pacer.reserve(["another-user"], stop)
    assert clock.now == before


def test_per_identity_limit_for_track_counts_events():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    pacer = Pacer(AppRate(None), TRACK_PER_IDENTITY, clock=clock)
    pacer.reserve(["hot"] * 600 + ["cold"] * 10, stop)
    pacer.reserve(["hot"] * 400, stop)
    assert clock.now == 1000.0
    pacer.reserve(["hot"], stop)
    assert clock.now - 1000.0 >= 60.0


def test_identity_counts_bound_every_recent_window_and_forget_old_ones():
    counts = IdentityCounts(60.0)
    assert counts.wait_for(counts.cells({"a": 600}), 1000, 0.0) == 0.0
    counts.add(counts.cells({"a": 600}))
    assert counts.wait_for(counts.cells({"a": 400, "b": 900}), 1000, 30.0) == 0.0
    counts.add(counts.cells({"a": 400}))
    wait = counts.wait_for(counts.cells({"a": 1}), 1000, 50.0)
    assert wait == 60.0 + RECEIPT_MARGIN - 50.0
    assert counts.wait_for(counts.cells({"a": 1}), 1000, 50.0 + wait) > 0, "the previous bucket still counts"
    assert counts.wait_for(counts.cells({"a": 1}), 1000, 2 * (60.0 + RECEIPT_MARGIN) + 1) == 0.0


def test_identity_counts_take_fixed_memory_and_never_hold_back_a_fresh_identity():
    counts = IdentityCounts(30.0)
    counts.wait_for(counts.cells({}), 30, 0.0)
    tracemalloc.start()
    for chunk in range(500):
        counts.add(counts.cells({f"user{chunk}-{n}": 1 for n in range(1000)}))
    grown, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert grown < 1_000_000, "500,000 identities add nothing to the sketch's memory"
    fresh = {f"fresh{n}": 1 for n in range(20_000)}
    assert counts.wait_for(counts.cells(fresh), 30, 1.0) == 0.0
    counts.add(counts.cells({"hot": 30}))
    assert counts.wait_for(counts.cells({"hot": 1}), 30, 1.0) > 0


@given(
    st.lists(
        st.tuples(st.integers(1, 1100), st.integers(0, 1100), st.integers(0, 1100), st.integers(0, 1100)),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([1000, 30]),
)
@example([(1000, 0, 5, 5)], 30)
@example([(1, 40, 0, 0)], 30)
@example([(1, 40, 10, 10)], 30)
def test_an_identity_waits_exactly_when_the_smaller_of_its_counters_is_full(identities, limit):
    """The count-min rule, whatever the rows hold: an identity's count is the smaller of its two counters, and a
    request waits when some identity already counted would go over the limit with this request's items."""
    counts = IdentityCounts(60.0)
    counts.wait_for([], limit, 0.0)
    requested = {f"user{n}": count for n, (count, _, _, _) in enumerate(identities)}
    cells = counts.cells(requested)
    for (low, high, _), (_, in_low, in_high, in_previous) in zip(cells, identities, strict=True):
        counts.current[low], counts.current[high], counts.previous[high] = in_low, in_high, in_previous
    held = [
        (min(counts.current[low] + counts.previous[low], counts.current[high] + counts.previous[high]), count)
        for low, high, count in cells
    ]
    full = any(count_held and count_held + count > limit for count_held, count in held)
    assert (counts.wait_for(cells, limit, 1.0) > 0) == full


def test_waiting_counts_senders_held_by_the_pacer():
    pacer = Pacer(AppRate(1000), NO_IDENTITY_LIMIT)
    pacer.reserve(["a"] * pacer.app.burst, threading.Event())
    stop = threading.Event()
    held = threading.Thread(target=pacer.reserve, args=(["b"], stop))
    held.start()
    deadline = time.monotonic() + 5
    while pacer.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pacer.waiting == 1
    stop.set()
    held.join(5)
    assert pacer.waiting == 0


def test_pacers_sharing_an_app_rate_share_its_ceiling():
    clock = FakeClock()
    stop = AdvancingStop(clock)
    shared, lock = AppRate(60_000), threading.Lock()
    events = Pacer(shared, TRACK_PER_IDENTITY, lock, clock=clock)
    users = Pacer(shared, PROPERTIES_PER_IDENTITY, lock, clock=clock)
    sent = []
    for n in range(10):
        pacer = events if n % 2 else users
        sent.append(pacer.reserve([f"k{n}-{i}" for i in range(1000)], stop))
    spacing = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert min(spacing) == pytest.approx(1000 / (1000 * AIM)), "one pace for both APIs, not one each"


def test_requests_hold_one_percent_of_a_minute_at_the_pace_once_heap_has_throttled():
    rate = AppRate(15_000)
    assert rate.request_items() == 450, "3% of the documented ceiling until Heap throttles"
    rate.throttled(sent_at=0.0, retry_after=None, now=1.0)
    assert rate.request_items() == int(rate.rate * 60 * 0.01) < 450
    unlimited = AppRate(None)
    unlimited.throttled(sent_at=0.0, retry_after=None, now=1.0)
    assert unlimited.request_items() == 1000, "no pace measured yet: the largest request"


def test_waits_under_way_together_count_once_in_wall_time():
    now = [0.0]
    waits = WaitClock(lambda: now[0])
    waits.begin()
    now[0] = 1.0
    waits.begin()
    now[0] = 3.0
    waits.end()
    assert waits.seconds() == 3.0, "a wait under way is counted up to now"
    now[0] = 4.0
    waits.end()
    now[0] = 10.0
    waits.begin()
    now[0] = 11.0
    waits.end()
    assert waits.seconds() == 5.0, "4 s with one or two waiting, then 1 s: not the 7 s the waits sum to"
