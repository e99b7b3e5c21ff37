"""STATE passes only when every batch before it is settled, in input order."""

from airbyte_cdk.models import AirbyteMessage, AirbyteStateMessage, AirbyteStateType, Type

from destination_heap_analytics.checkpoint import CheckpointTracker


def state(n):
    return AirbyteMessage(type=Type.STATE, state=AirbyteStateMessage(type=AirbyteStateType.LEGACY, data={"n": n}))


def names(messages):
    return [m.state.data["n"] for m in messages]


def test_states_wait_for_every_earlier_batch_and_keep_their_order():
    tracker = CheckpointTracker()
    assert names(tracker.add(state("s0"), 0, 0)) == ["s0"]
    assert tracker.add(state("s1"), 1, 10) == []
    assert tracker.add(state("s2"), 3, 20) == []
    assert tracker.settle(2) == []
    assert names(tracker.settle(1)) == ["s1"]
    assert names(tracker.settle(3)) == ["s2"]


def test_states_carry_the_record_count_since_the_previous_state():
    tracker = CheckpointTracker()
    released = tracker.add(state("s"), 0, 1234)
    assert released[0].state.destinationStats.recordCount == 1234.0
