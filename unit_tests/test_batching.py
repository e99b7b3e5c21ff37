"""Batching: item and byte caps, merging property updates, splitting."""

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from destination_heap_analytics.batching import BatchBuilder, BatchNumbers, ItemTooLarge, RequestBody, decoded
from destination_heap_analytics.mapping import HeapItem

BODY = RequestBody("11", "users")


def item(key, position, **properties):
    return HeapItem(key, {"identity": key, "properties": properties}, position)


def fill(builder, items):
    batches = [batch for batch in map(builder.add, items) if batch is not None]
    last = builder.seal()
    return batches + ([last] if last else [])


def test_batches_hold_at_most_1000_items_and_encode_heaps_bulk_form():
    batches = fill(BatchBuilder(BODY, 10_000_000, merge=False), [item(str(n), n) for n in range(2500)])
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [b.number for b in batches] == [1, 2, 3]
    body = orjson.loads(BODY(batches[2]))
    assert body["app_id"] == "11"
    assert [u["identity"] for u in body["users"]] == [str(n) for n in range(2000, 2500)]


def test_byte_cap_bounds_every_request_body():
    items = [item(str(n), n, text="x" * 500) for n in range(100)]
    batches = fill(BatchBuilder(BODY, 10_000, merge=False), items)
    assert all(len(BODY(b)) <= 10_000 for b in batches)
    assert sum(len(b) for b in batches) == 100


def test_an_item_larger_than_the_cap_is_refused():
    with pytest.raises(ItemTooLarge):
        BatchBuilder(BODY, 10_000, merge=False).add(item("a", 1, text="x" * 20_000))


def test_merge_keeps_one_item_per_key_with_later_values_winning():
    builder = BatchBuilder(BODY, 1_000_000, merge=True)
    for new in [item("a", 1, plan="free", seats=1), item("b", 2, plan="pro"), item("a", 3, plan="pro")]:
        assert builder.add(new) is None
    batch = builder.seal()
    assert [(i.key, i.records, i.position) for i in batch.items] == [("a", 2, 3), ("b", 1, 2)]
    assert orjson.loads(BODY(batch))["users"][0]["properties"] == {"plan": "pro", "seats": 1}
    assert batch.size == len(BODY(batch)) - BODY.overhead + 1


def test_batches_of_every_builder_are_numbered_in_the_order_their_first_record_came():
    numbers = BatchNumbers()
    events = BatchBuilder(BODY, 1_000_000, merge=False, numbers=numbers, max_items=2)
    users = BatchBuilder(RequestBody("11", "users"), 1_000_000, merge=True, numbers=numbers)
    assert numbers.last == 0, "an empty builder takes no number"
    events.add(item("a", 1))
    users.add(item("b", 2))
    events.add(item("c", 3))
    full = events.add(item("d", 4))
    assert (full.number, events.batch.number, users.batch.number) == (1, 3, 2)
    assert users.seal().number == 2
    assert users.seal() is None
    assert numbers.last == 3


def test_a_batch_is_old_once_its_first_item_has_waited_long_enough():
    now = [100.0]
    builder = BatchBuilder(BODY, 1_000_000, merge=False, clock=lambda: now[0])
    assert not builder.older_than(5.0), "an empty batch is never old"
    builder.add(item("a", 1))
    now[0] += 4.9
    builder.add(item("b", 2))
    assert not builder.older_than(5.0)
    now[0] += 0.1
    assert builder.older_than(5.0)


@given(
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 9)), max_size=300),
    st.integers(1, 50),
    st.integers(1, 60),
)
def test_merging_and_splitting_lose_nothing_and_keep_per_key_order(updates, max_items, part_size):
    builder = BatchBuilder(BODY, 1_000_000, merge=True, max_items=max_items)
    items = [item(key, position, v=value) for position, (key, value) in enumerate(updates, start=1)]
    batches = fill(builder, items)
    assert sum(i.records for b in batches for i in b.items) == len(updates)
    final = {}
    for batch in batches:
        assert len({i.key for i in batch.items}) == len(batch)
        parts = batch.parts(part_size)
        assert [i for part in parts for i in part.items] == batch.items
        assert [tail for part in parts for tail in part.encoded] == batch.encoded
        assert sum(part.size for part in parts) == batch.size == sum(len(tail) + 2 for tail in batch.encoded)
        assert all(len(part) <= part_size and part.number == batch.number for part in parts)
        for merged in map(decoded, batch.encoded):
            final[merged["identity"]] = merged["properties"]["v"]
    expected = {}
    for key, value in updates:
        expected[key] = value
    assert final == expected


@given(st.lists(st.sampled_from("ab"), min_size=80, max_size=200))
def test_merged_updates_never_take_a_request_over_the_byte_cap(keys):
    cap = 10_000
    builder = BatchBuilder(BODY, cap, merge=True)
    items = [item(key, position, **{f"p{position}": "x" * 300}) for position, key in enumerate(keys, start=1)]
    batches = fill(builder, items)
    assert all(len(BODY(batch)) <= cap for batch in batches)
    assert sum(i.records for b in batches for i in b.items) == len(keys)
    assert all(len({i.key for i in batch.items}) == len(batch) for batch in batches)


def test_no_merge_crosses_a_state_and_a_merged_item_keeps_each_update():
    builder = BatchBuilder(BODY, 10_000_000, merge=True)
    assert builder.add(item("jo", 1, plan="free")) is None
    assert builder.add(item("jo", 2, seats="5")) is None
    merged = builder.batch.items[0]
    assert [update.position for update in merged.merged] == [1, 2] and merged.records == 2
    assert [update.body["properties"] for update in merged.merged] == [{"plan": "free"}, {"seats": "5"}]
    assert decoded(builder.batch.encoded[0])["properties"] == {"plan": "free", "seats": "5"}
    builder.add(item("al", 3, plan="pro"))
    builder.barrier()
    sealed = builder.add(item("jo", 4, plan="pro"))
    assert sealed is not None, "an update after the STATE opens the next batch instead of merging"
    assert [i.position for i in sealed.items] == [2, 3]
    assert builder.add(item("al", 5, plan="team")) is None, "after the seal, merging starts afresh"
    assert [i.records for i in builder.batch.items] == [1, 1]


@given(st.lists(st.text(max_size=40), min_size=1, max_size=60), st.sampled_from(["users", None]))
def test_a_batch_knows_its_body_size_exactly_in_both_forms(texts, items_field):
    body = RequestBody("app-ü", items_field)
    builder = BatchBuilder(body, 10_000, merge=False, max_items=1 if body.single else 1000)
    items = [item(str(n), n, text=text) for n, text in enumerate(texts)]
    bodies = {entry.position: entry.body for entry in items}
    for batch in fill(builder, items):
        encoded = body(batch)
        joined = 3 if body.single else 1
        assert len(encoded) == body.overhead + batch.size - joined <= 10_000
        sent = orjson.loads(encoded)
        if body.single:
            assert sent == {"app_id": "app-ü", **bodies[batch.items[0].position]}
        else:
            assert sent == {"app_id": "app-ü", "users": [bodies[i.position] for i in batch.items]}


def test_a_batch_keeps_an_items_json_and_the_item_lets_go_of_its_body():
    builder = BatchBuilder(BODY, 1_000_000, merge=False)
    added = item("jo", 1, plan="pro", seats=5)
    body = added.body
    builder.add(added)
    assert added.body is None
    assert builder.batch.items == [added] and list(map(decoded, builder.batch.encoded)) == [body]
