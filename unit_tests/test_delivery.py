"""The HTTP client and batch sender against a scripted Heap (a real HTTP server on 127.0.0.1)."""

import base64
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.batching import Batch, RequestBody
from destination_heap_analytics.client import VOCABULARY, HeapClient, Verdict, heap_words, retry_after_seconds
from destination_heap_analytics.delivery import (
    BatchResult,
    BatchSender,
    FailFast,
    Pipeline,
    RetryPolicy,
    SplitPolicy,
    Stopped,
)
from destination_heap_analytics.mapping import HeapItem
from destination_heap_analytics.pacing import TRACK_PER_IDENTITY, AppRate, Pacer
from unit_tests.scripted_heap import RESET, Reply, ScriptedHeap

BODY = RequestBody("11", "events")


@pytest.fixture(scope="module")
def running_heap():
    with ScriptedHeap() as heap:
        yield heap


@pytest.fixture
def heap(running_heap):
    running_heap.answer(Reply())
    return running_heap


def batch(*identities):
    items = [HeapItem(i, {"identity": i, "event": "e", "properties": {"v": i}}, n) for n, i in enumerate(identities, 1)]
    return Batch(1, items)


def sender(url, retry_seconds=30.0, fail_fast=False, pacer=None, clock=time.monotonic):
    pacer = pacer or Pacer(AppRate(None), TRACK_PER_IDENTITY)
    return BatchSender(
        HeapClient(url),
        pacer,
        BODY,
        "11",
        RetryPolicy(retry_seconds),
        threading.Event(),
        fail_fast=FailFast() if fail_fast else None,
        jitter=lambda: 0.0,
        clock=clock,
    )


def sent_identities(request):
    return [event["identity"] for event in request.json()["events"]]


@pytest.mark.parametrize(
    ("status", "text", "verdict"),
    [
        (200, "", Verdict.ACCEPTED),
        (400, '{"error": "Invalid app_id"}', Verdict.REJECTED),
        (401, "", Verdict.BAD_APP_ID),
        (403, "", Verdict.BAD_APP_ID),
        (400, '{"error": "bad property"}', Verdict.REJECTED),
        (301, "", Verdict.REDIRECTED),
        (307, "", Verdict.REDIRECTED),
        (413, "", Verdict.TOO_LARGE),
        (429, "", Verdict.THROTTLED),
        (503, "", Verdict.TRANSIENT),
        (404, "", Verdict.FATAL),
    ],
)
def test_answers_are_classified(heap, status, text, verdict):
    heap.answer(Reply(status, text, {"Location": "https://elsewhere.test/x"}))
    assert HeapClient(heap.url).post(b"{}").verdict is verdict


def test_only_the_vocabulary_of_errors_leaves_an_answer():
    echo = '{"error": "Invalid identity", "request": {"identity": "jo@x.io", "properties": {"jo_x_io": 42}}}'
    assert heap_words(echo) == "error invalid identity request identity … properties …"
    assert heap_words("\\u006a\\u006f@x.io is not a valid value for id") == "… is not a valid value for id"
    assert heap_words("properties must be non-empty") == "properties must be non-empty"
    assert len(heap_words("invalid " * 10_000 + " ".join(sorted(VOCABULARY)))) < 200


def test_a_redirect_names_only_where_it_points(heap):
    location = "https://user:secret@evil.test:8443/steal?email=jo@x.io"
    heap.answer(Reply(308, "", {"Location": location}))
    answer = HeapClient(heap.url).post(b"{}")
    assert answer.describe() == 'HTTP 308 ("redirected to https://evil.test:8443")'
    assert heap.call_count == 1


def test_network_faults_are_transient(heap):
    heap.answer(RESET)
    reset = HeapClient(heap.url).post(b"{}")
    assert reset.verdict is Verdict.TRANSIENT and reset.detail.startswith("connection failed")
    heap.answer(Reply(stall=1.0))
    slow = HeapClient(heap.url, deadline=0.3).post(b"{}")
    assert slow.verdict is Verdict.TRANSIENT
    assert "0.3s" in slow.detail or "timed out" in slow.detail


def test_retry_after_in_seconds_or_as_a_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    in_half_a_minute = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 28 <= retry_after_seconds(in_half_a_minute) <= 30
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds("nan") is None
    assert retry_after_seconds("inf") is None


def accepted_by(sender: BatchSender) -> int:
    """Records the sender counted as Heap accepted them."""
    return sum(sender.accepted.counts.values())


def test_transient_faults_and_throttling_are_retried_with_the_same_body(heap):
    heap.answer(Reply(500), Reply(429, headers={"Retry-After": "0"}), RESET, Reply(200))
    retrying = sender(heap.url)
    result = retrying.send(batch("a", "b"))
    assert (accepted_by(retrying), result.requests, result.retries, result.throttled) == (2, 4, 3, 1)
    bodies = {request.body for request in heap.received}
    assert len(bodies) == 1 and heap.call_count == 4
    assert {request.path for request in heap.received} == {"/api/track"}


def refusing(identity, error):
    """A Heap that answers 400 with `error` to any request holding `identity`, else 200."""

    def answer(request):
        return Reply(400, error) if identity in sent_identities(request) else Reply()

    return answer


def test_a_400_is_narrowed_down_to_the_refused_items(heap):
    heap.answer(refusing("poison", '{"error": "property value refused"}'))
    narrowing = sender(heap.url)
    result = narrowing.send(batch("a", "b", "poison", "c", "d", "e", "f"))
    assert accepted_by(narrowing) == 6
    assert [r.position for r in result.rejections] == [3]
    assert "property value refused" in result.rejections[0].reason
    accepted = [r for r in heap.received if "poison" not in sent_identities(r)]
    assert sorted(i for r in accepted for i in sent_identities(r)) == ["a", "b", "c", "d", "e", "f"]


def test_bad_app_id_fails_at_once_as_a_config_error(heap):
    heap.answer(Reply(400, '{"error": "Invalid app_id"}'))
    with pytest.raises(AirbyteTracedException) as caught:
        sender(heap.url).send(batch("a"))
    assert caught.value.failure_type == FailureType.config_error
    assert "Heap rejected app_id '11'" in caught.value.message
    assert [len(r.json()["events"]) for r in heap.received] == [1, 0]


def test_an_item_whose_refusal_mentions_the_app_id_is_one_refused_item(heap):
    heap.answer(refusing("b", '{"error": "property unknown_environment: invalid app_id reference"}'))
    test_sender = sender(heap.url)
    result = test_sender.send(batch("a", "b", "c"))
    assert (accepted_by(test_sender), [r.position for r in result.rejections]) == (2, [2])
    probes = [r for r in heap.received if not r.json()["events"]]
    assert len(probes) == 1
    test_sender.send(batch("b"))
    assert len([r for r in heap.received if not r.json()["events"]]) == 1


@pytest.mark.parametrize("fail_fast", [False, True])
def test_a_batch_of_refused_items_costs_about_a_request_an_item(heap, fail_fast):
    heap.answer(Reply(400, '{"error": "refused"}'))
    test_sender = sender(heap.url, fail_fast=fail_fast)
    if fail_fast:
        with pytest.raises(AirbyteTracedException, match="on_rejected_record is 'fail'"):
            test_sender.send(batch(*[f"u{n}" for n in range(1000)]))
        assert heap.call_count <= 11
        return
    test_sender.guard.accept()  # Heap accepted an earlier request: these refusals are the records' own
    for number in range(3):
        result = test_sender.send(batch(*[f"u{number}-{n}" for n in range(1000)]))
        assert len(result.rejections) == 1000
    assert heap.call_count <= 3_300, "halving costs 2n - 1 requests; the policy keeps it near n"


def test_a_heap_that_has_accepted_nothing_and_refused_a_hundred_requests_stops_the_sync(heap):
    heap.answer(Reply(400, '{"error": "refused"}'))
    test_sender = sender(heap.url)
    with pytest.raises(AirbyteTracedException, match="refused the first 100 requests") as raised:
        test_sender.send(batch(*[f"u{n}" for n in range(1000)]))
    assert heap.call_count == 100
    assert raised.value.failure_type == FailureType.config_error


def test_split_policy_halves_while_refusals_are_rare_and_shrinks_parts_as_they_grow():
    policy = SplitPolicy()
    assert policy.part_size(1000) == 1000
    policy.observe(10_000, 1)
    assert policy.part_size(1000) == 1000
    policy.observe(1000, 250)
    assert 1 < policy.part_size(1000) < 100
    policy.observe(5000, 5000)
    assert policy.part_size(1000) == 1


def test_an_exhausted_retry_budget_fails_as_transient_naming_the_endpoint(heap):
    heap.answer(Reply(503, "upstream down for user a@b.io"))
    with pytest.raises(AirbyteTracedException) as caught:
        sender(heap.url, retry_seconds=0.001).send(batch("a@b.io"))
    assert caught.value.failure_type == FailureType.transient_error
    assert heap.url in caught.value.message and "HTTP 503" in caught.value.message
    assert "a@b.io" not in caught.value.message


def test_the_retry_budget_runs_from_the_first_retryable_answer():
    policy = RetryPolicy(15)
    assert policy.deadline == float("inf"), "a request never retried has no deadline, however long it is paced"
    first = policy.increment(100.0)
    assert (first.attempts, first.deadline) == (1, 115.0)
    second = first.increment(110.0)
    assert (second.attempts, second.deadline) == (2, 115.0)
    assert policy.attempts == 0, "increment returns a new policy"


def test_retry_delay_is_the_longer_of_retry_after_and_capped_jittered_backoff():
    policy = RetryPolicy(600, backoff_base=1.0, backoff_cap=60.0)
    assert policy.increment(0).delay(7.0, jitter=0.5) == 7.0
    assert policy.increment(0).delay(None, jitter=0.5) == 1.0
    assert policy.increment(0).delay(0.0, jitter=0.5) == 1.0, "Retry-After: 0 still backs off"
    tenth = policy
    for _ in range(10):
        tenth = tenth.increment(0)
    assert tenth.delay(None, jitter=1.0) == 60.0
    assert tenth.delay(None, jitter=0.0) == 0.0


def test_pacing_waits_count_against_the_retry_budget(heap):
    """Heap throttles every request: the limiter's waits after the first 429 are charged to the budget,
    so the request fails once the next attempt could not go within it, not after waiting for it."""
    heap.answer(Reply(429, headers={"Retry-After": "1"}))
    clock = [0.0]

    class Stop(threading.Event):
        def wait(self, timeout=None):
            clock[0] += timeout
            return False

    pacer = Pacer(AppRate(600), TRACK_PER_IDENTITY, clock=lambda: clock[0])
    throttled = sender(heap.url, retry_seconds=15, pacer=pacer, clock=lambda: clock[0])
    throttled.stop = Stop()
    with pytest.raises(AirbyteTracedException, match="15s retry budget"):
        throttled.send(batch(*(f"u{n}" for n in range(pacer.app.burst))))
    assert clock[0] <= 15.0
    assert heap.call_count >= 2


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.sets(st.integers(0, 39), max_size=6))
def test_splitting_delivers_every_good_item_once_and_rejects_exactly_the_bad(running_heap, size, bad):
    identities = [f"bad{n}" if n in bad else f"ok{n}" for n in range(size)]

    def answer(request):
        refused = any(i.startswith("bad") for i in sent_identities(request))
        return Reply(400, '{"error": "refused"}') if refused else Reply()

    running_heap.answer(answer)
    isolating = sender(running_heap.url)
    result = isolating.send(batch(*identities))
    sent = [sent_identities(r) for r in running_heap.received]
    delivered = [
        i for identities_sent in sent if not any(s.startswith("bad") for s in identities_sent) for i in identities_sent
    ]
    assert sorted(delivered) == sorted(i for i in identities if i.startswith("ok"))
    assert sorted(r.position for r in result.rejections) == sorted(n + 1 for n in bad if n < size)
    assert accepted_by(isolating) + len(result.rejections) == size


def test_proxy_and_ca_bundle_come_from_the_environment_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://us%40er:p%3Ass@proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate.pem")
    client = HeapClient("https://heapanalytics.com/api/track")
    pool = client.pool
    assert (pool.proxy.host, pool.proxy.port) == ("proxy.test", 3128)
    assert pool.proxy_headers["proxy-authorization"] == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert pool.ca_certs == "/etc/ssl/corporate.pem"
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere.test:3128")
    assert client.pool is pool, "read once"
    assert HeapClient("http://127.0.0.1:9/api/track").pool.proxy is None


def test_a_refused_merged_update_is_resent_as_each_records_own_so_only_the_bad_one_is_rejected(heap):
    sent = []

    def answer(request):
        users = request.json()["users"]
        sent.append([user["properties"] for user in users])
        return Reply(400 if any("bad" in user["properties"].values() for user in users) else 200)

    heap.answer(answer)
    updates = [
        HeapItem("jo", {"identity": "jo", "properties": properties}, n, stream=("users", None))
        for n, properties in enumerate([{"plan": "free"}, {"age": "bad"}, {"plan": "pro"}], 1)
    ]
    body = {"identity": "jo", "properties": {"plan": "pro", "age": "bad"}}
    merged = HeapItem("jo", body, 3, 3, (), None, tuple(updates))
    users = BatchSender(
        HeapClient(heap.url),
        Pacer(AppRate(None), TRACK_PER_IDENTITY),
        RequestBody("11", "users"),
        "11",
        RetryPolicy(30),
        threading.Event(),
        jitter=lambda: 0.0,
    )
    result = users.send(Batch(1, [merged]))
    assert [(r.stream, r.position) for r in result.rejections] == [(("users", None), 2)]
    assert sent[1:] == [[{"plan": "free"}], [{"age": "bad"}], [{"plan": "pro"}]], "each update alone, in order"
    assert users.accepted.of(("users", None)) == 2, "the two updates Heap took, each counted as its record"


def test_with_fail_the_first_refusal_stops_every_other_sender(heap):
    heap.answer(Reply(400, '{"error": "refused"}'))
    shared = FailFast()
    assert shared.claim()
    other = sender(heap.url)
    other.fail_fast = shared
    claimed_elsewhere = threading.Thread(target=lambda: None)
    claimed_elsewhere.start()
    claimed_elsewhere.join()
    shared.owner = claimed_elsewhere.ident
    with pytest.raises(Stopped):
        other.send(batch("a", "b"))
    assert heap.call_count == 0


class RecordingSender:
    """Stands in for BatchSender in the pipeline: notes when each batch's send starts and ends; the first
    batch's send lasts until `release` is set."""

    def __init__(self):
        self.release = threading.Event()
        self.events = []

    def send(self, sent):
        self.events.append(("start", sent.number))
        if sent.number == 1:
            self.release.wait(5)
        self.events.append(("end", sent.number))
        return BatchResult(sent.number)

    def abort(self):
        self.release.set()


def numbered(number, *identities):
    return Batch(number, [HeapItem(i, {"identity": i, "properties": {}}, number) for i in identities])


def test_an_ordered_pipeline_starts_a_batch_only_after_earlier_ones_sharing_a_key():
    sender = RecordingSender()
    pipeline = Pipeline(sender, workers=3, ordered=True)
    try:
        pipeline.submit(numbered(1, "jo", "al"))
        pipeline.submit(numbered(2, "bo"))
        threading.Timer(0.2, sender.release.set).start()
        pipeline.submit(numbered(3, "cy", "jo"))
        pipeline.drain()
    finally:
        pipeline.close()
    events = sender.events
    assert events.index(("end", 1)) < events.index(("start", 3)), "batch 3 shares jo with batch 1"
    assert events.index(("start", 2)) < events.index(("end", 1)), "batch 2 shares no key: it did not wait"
    assert pipeline.keys_held == {}, "no keys are held once every batch is settled"
