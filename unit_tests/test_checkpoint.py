"""STATE passes only when every batch before it is settled, in input order, carrying the platform's counts."""

from destination_heap_analytics.checkpoint import CheckpointTracker
from destination_heap_analytics.messages import State

USERS = ("users", None)


def state(n, stream=USERS):
    if stream is None:
        return State({"type": "STATE", "state": {"type": "GLOBAL", "id": n, "global": {}}}, None)
    body = {"type": "STREAM", "id": n, "stream": {"stream_descriptor": {"name": stream[0]}, "stream_state": {}}}
    return State({"type": "STATE", "state": body}, stream)


def ids(messages):
    return [m["state"]["id"] for m in messages]


def counts(messages):
    return [m["state"]["destinationStats"]["recordCount"] for m in messages]


def test_states_wait_for_every_earlier_batch_and_keep_their_order():
    tracker = CheckpointTracker()
    assert ids(tracker.add(state(0), 0, 0)) == [0]
    assert tracker.add(state(1), 1, 10) == []
    assert tracker.add(state(2), 3, 20) == []
    assert tracker.settle(2) == []
    assert ids(tracker.settle(1)) == [1]
    assert ids(tracker.settle(3)) == [2]


def test_a_stream_state_counts_that_streams_records_since_its_previous_state():
    tracker = CheckpointTracker()
    orders, tenant_b_users = ("orders", None), ("users", "tenant_b")
    tracker.received.update([USERS] * 5 + [orders] * 3 + [tenant_b_users] * 2)
    assert counts(tracker.add(state(1, orders), 0, 10)) == [3.0]
    tracker.received.update([USERS] * 2)
    assert counts(tracker.add(state(2, USERS), 0, 12)) == [7.0]
    assert counts(tracker.add(state(3, tenant_b_users), 0, 12)) == [2.0]
    assert counts(tracker.add(state(4, USERS), 0, 12)) == [0.0]


def test_a_global_state_counts_every_record_since_the_previous_state():
    tracker = CheckpointTracker()
    assert counts(tracker.add(state(1, None), 0, 1234)) == [1234.0]
    assert counts(tracker.add(state(2, USERS), 0, 1300)) == [0.0]
    assert counts(tracker.add(state(3, None), 0, 1310)) == [10.0]


def test_destination_stats_are_the_only_change_and_overwrite_what_came():
    message = state(7)
    message.message["state"]["destinationStats"] = {"recordCount": 99.0, "other": 1}
    message.message["state"]["sourceStats"] = {"recordCount": 4.0}
    tracker = CheckpointTracker()
    tracker.received[USERS] = 4
    (out,) = tracker.add(message, 0, 4)
    assert out["state"] == {
        "type": "STREAM",
        "id": 7,
        "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {}},
        "destinationStats": {"recordCount": 4.0},
        "sourceStats": {"recordCount": 4.0},
    }
