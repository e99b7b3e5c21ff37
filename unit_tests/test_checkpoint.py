"""STATE passes only when the batches holding its records are settled, in order per stream, carrying the
platform's counts, byte for byte as it came but for destinationStats."""

import json

from destination_heap_analytics.checkpoint import CheckpointTracker
from destination_heap_analytics.messages import state_at

USERS, ORDERS = ("users", None), ("orders", None)


def state(n, stream=USERS, **extra):
    if stream is None:
        body = {"type": "GLOBAL", "id": n, "global": {}, **extra}
    else:
        descriptor = {"name": stream[0], **({"namespace": stream[1]} if stream[1] else {})}
        body = {"type": "STREAM", "id": n, "stream": {"stream_descriptor": descriptor, "stream_state": {}}, **extra}
    return state_at(json.dumps({"type": "STATE", "state": body}).encode(), stream)


def ids(lines):
    return [json.loads(line)["state"]["id"] for line in lines]


def stats(lines):
    return [json.loads(line)["state"]["destinationStats"] for line in lines]


def counts(lines):
    return [s["recordCount"] for s in stats(lines)]


def test_states_wait_for_every_earlier_batch_of_their_stream_and_keep_their_order():
    tracker = CheckpointTracker()
    assert ids(tracker.add(state(0), 0, 0)) == [0]
    tracker.note(USERS, 1)
    tracker.note(USERS, 2)
    tracker.note(USERS, 3)
    assert tracker.add(state(1), 1, 10) == []
    assert tracker.add(state(2), 3, 20) == []
    assert tracker.settle(2) == []
    assert ids(tracker.settle(1)) == [1]
    assert ids(tracker.settle(3)) == [2]


def test_a_stream_state_does_not_wait_for_another_streams_batches():
    tracker = CheckpointTracker()
    tracker.note(ORDERS, 1)
    tracker.note(USERS, 2)
    tracker.note(ORDERS, 3)
    assert tracker.add(state(1, ORDERS), 3, 3) == []
    assert tracker.add(state(2, USERS), 3, 3) == []
    assert ids(tracker.settle(2)) == [2], "users' STATE waits for users' batch only"
    assert tracker.settle(3) == []
    assert ids(tracker.settle(1)) == [1]


def test_a_global_state_waits_for_every_batch():
    tracker = CheckpointTracker()
    tracker.note(ORDERS, 1)
    tracker.note(USERS, 2)
    assert tracker.add(state(1, None), 2, 2) == []
    assert tracker.settle(2) == []
    assert ids(tracker.settle(1)) == [1]


def test_a_stream_state_counts_that_streams_records_since_its_previous_state():
    tracker = CheckpointTracker()
    tenant_b_users = ("users", "tenant_b")
    for stream, count in ((USERS, 5), (ORDERS, 3), (tenant_b_users, 2)):
        tracker.tally(stream).count += count
    assert counts(tracker.add(state(1, ORDERS), 0, 10)) == [3.0]
    tracker.tally(USERS).count += 2
    assert counts(tracker.add(state(2, USERS), 0, 12)) == [7.0]
    assert counts(tracker.add(state(3, tenant_b_users), 0, 12)) == [2.0]
    assert counts(tracker.add(state(4, USERS), 0, 12)) == [0.0]


def test_a_global_state_counts_every_record_since_the_previous_state():
    tracker = CheckpointTracker()
    assert counts(tracker.add(state(1, None), 0, 1234)) == [1234.0]
    assert counts(tracker.add(state(2, USERS), 0, 1300)) == [0.0]
    assert counts(tracker.add(state(3, None), 0, 1310)) == [10.0]


def test_rejections_count_in_the_span_of_the_record_even_when_they_come_after_its_state():
    tracker = CheckpointTracker()
    tracker.tally(USERS).count += 4
    tracker.note(USERS, 1)
    tracker.reject(USERS, 2)
    assert tracker.add(state(1), 1, 4) == []
    tracker.tally(USERS).count += 3
    tracker.reject(USERS, 6)
    assert tracker.add(state(2), 1, 7) == []
    tracker.reject(USERS, 3)
    assert stats(tracker.settle(1)) == [
        {"recordCount": 2.0, "rejectedRecordCount": 2.0},
        {"recordCount": 2.0, "rejectedRecordCount": 1.0},
    ]


def test_a_record_rejected_by_two_routes_counts_once():
    tracker = CheckpointTracker(routed_twice=[USERS])
    tracker.tally(USERS).count += 3
    for position in (1, 1, 2):
        tracker.reject(USERS, position)
    assert stats(tracker.add(state(1), 0, 3)) == [{"recordCount": 1.0, "rejectedRecordCount": 2.0}]


def test_held_states_are_measured_so_reading_can_pause():
    tracker = CheckpointTracker()
    tracker.note(USERS, 1)
    big = state(1, padding="x" * 1000)
    tracker.add(big, 1, 1)
    tracker.add(state(2), 1, 1)
    assert tracker.held_count == 2 and tracker.held_bytes > 1000
    tracker.settle(1)
    assert tracker.held_count == 0 and tracker.held_bytes == 0


def test_the_state_passes_byte_for_byte_but_for_destination_stats():
    raw = (
        b'{"type":"STATE", "state": {"type":"STREAM","id":1e400,"n":0.10000000000000000000000001,'
        b'"stream":{"stream_descriptor":{"name":"users"}},"destinationStats":{"recordCount":99.0,"other":1},'
        b'"sourceStats":{"recordCount":4.0}}, "x":"\\ud800"}'
    )
    tracker = CheckpointTracker()
    tracker.tally(USERS).count = 4
    (out,) = tracker.add(state_at(raw, USERS), 0, 4)
    assert out == raw.replace(b'{"recordCount":99.0,"other":1}', b'{"recordCount":4.0,"rejectedRecordCount":0.0}')
