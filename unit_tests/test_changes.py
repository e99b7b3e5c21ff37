"""The snapshot against a model of Heap: whatever Heap answers, in whatever order, and wherever a sync is
killed, an update is skipped only when Heap already holds it."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from hypothesis import given, note, settings
from hypothesis import strategies as st

from destination_heap_analytics.changes import ObjectFile, Snapshot, digest
from destination_heap_analytics.config import S3Storage

KEYS = st.sampled_from("ab")
VALUES = st.integers(0, 1)
SYNC = st.lists(st.tuples(KEYS, VALUES), max_size=12)


def value_of(value: int) -> bytes:
    return digest(str(value).encode())


def answer_one(snapshot, scope, in_flight, heap, landed, data, compares) -> None:
    """Heap answers one request in flight (a key's in the order they were sent): accepted, or refused."""
    oldest = {}
    for at, (key, _, _) in enumerate(in_flight):
        oldest.setdefault(key, at)
    key, value, position = in_flight.pop(data.draw(st.sampled_from(sorted(oldest.values()))))
    ok = data.draw(st.booleans(), label="accepted")
    note(f"answer {key}={value}@{position} accepted={ok}")
    if ok:
        heap[key] = value
        landed.append(position)
        snapshot.accepted([((scope, key.encode(), value_of(value) if compares else b""), position)])
    if data.draw(st.booleans(), label="commit"):
        snapshot.commit()


def run_syncs(path: Path, syncs: list[list[tuple[str, int]]], data: st.DataObject, compares: bool) -> list[int]:
    """Runs each sync through the snapshot against a model Heap; returns the sends of each. After each sync,
    Heap holds what it would hold had every skipped update been sent and accepted."""
    heap: dict[str, int] = {}
    sends = []
    for updates in syncs:
        at_start = dict(heap)
        landed: list[int] = []  # positions of the updates Heap applied, or that were skipped
        snapshot = Snapshot(path, "test")
        scope, _ = snapshot.scope("users", "mapping", None, False, compares)
        killed_at = data.draw(st.none() | st.integers(0, len(updates)), label="killed at")
        in_flight: list[tuple[str, int, int]] = []
        sent = 0

        for position, (key, value) in enumerate(updates, start=1):
            if position - 1 == killed_at:
                break
            if snapshot.unchanged(scope, key.encode(), value_of(value) if compares else b"", position):
                note(f"skip {key}={value}@{position}")
                note(f"skip {key}={value}@{position}")
                assert key in heap, f"skipped {key}={value}, which Heap never received"
                landed.append(position)
            else:
                snapshot.commit()  # as a lane does before the request leaves
                sent += 1
                note(f"send {key}={value}@{position}")
                note(f"send {key}={value}@{position}")
                in_flight.append((key, value, position))
            while in_flight and data.draw(st.booleans(), label="answer now"):
                answer_one(snapshot, scope, in_flight, heap, landed, data, compares)
        if killed_at is not None and killed_at < len(updates):
            for key, value, position in in_flight:  # the kill: Heap got each request in flight, or not
                if data.draw(st.booleans(), label="reached Heap"):
                    heap[key] = value
                    landed.append(position)
            snapshot.db.close()  # without a commit: what was not committed is lost, as in a kill
        else:
            while in_flight:
                answer_one(snapshot, scope, in_flight, heap, landed, data, compares)
            snapshot.close()
        expected = dict(at_start)
        for position in sorted(landed):
            key, value = updates[position - 1]
            expected[key] = value
        note(f"heap {heap} expected {expected} at_start {at_start}")
        assert heap == expected if compares else set(heap) == set(expected)
        sends.append(sent)
    return sends


@pytest.mark.parametrize("compares", [True, False], ids=["properties", "events"])
@settings(max_examples=1000)
@given(syncs=st.lists(SYNC, min_size=1, max_size=5), data=st.data())
def test_nothing_is_skipped_that_heap_does_not_hold(compares, syncs, data):
    with tempfile.TemporaryDirectory() as folder:
        run_syncs(Path(folder) / "snapshot.sqlite3", syncs, data, compares)


@given(updates=st.dictionaries(KEYS, VALUES, min_size=1))
def test_a_resync_of_what_heap_accepted_sends_nothing(updates):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "snapshot.sqlite3"
        for compares in (True, False):
            for round_ in range(2):
                snapshot = Snapshot(path, "test")
                scope, _ = snapshot.scope(f"users {compares}", "mapping", None, False, compares)
                sent = []
                for position, (key, value) in enumerate(updates.items(), start=1):
                    change = (scope, key.encode(), value_of(value) if compares else b"")
                    if not snapshot.unchanged(*change, position):
                        sent.append((change, position))
                snapshot.commit()
                snapshot.accepted(sent)
                snapshot.close()
                assert len(sent) == (len(updates) if round_ == 0 else 0)


def test_a_changed_mapping_or_a_refresh_empties_the_scope_and_a_dry_run_writes_nothing(tmp_path):
    path = tmp_path / "snapshot.sqlite3"
    snapshot = Snapshot(path, "test")
    scope, reason = snapshot.scope("users", "mapping 1", 1, False, True)
    assert reason is None
    snapshot.unchanged(scope, b"a", value_of(1), 1)
    snapshot.commit()
    snapshot.accepted([((scope, b"a", value_of(1)), 1)])
    snapshot.close()

    dry = Snapshot(path, "test", writable=False)
    changed = "the mapping or app id changed since the last sync"
    assert dry.scope("users", "mapping 2", 1, False, True) == (scope, changed)
    assert dry.unchanged(scope, b"a", value_of(1), 1), "a dry run empties nothing"
    dry.close()

    again = Snapshot(path, "test")
    assert again.scope("users", "mapping 1", 2, False, True) == (scope, None), "a new generation without a refresh"
    assert again.known(scope) == 1
    assert again.scope("users", "mapping 1", 2, True, True) == (scope, None), "a refresh already counted"
    assert again.scope("users", "mapping 1", 3, True, True) == (scope, "the stream was refreshed (generation 3)")
    assert again.known(scope) == 0
    assert again.scope("users", "mapping 1", None, False, True) == (scope, None), "a catalog without generations"
    assert again.scope("users", "mapping 1", 3, True, True) == (scope, None), "generation 3 was already counted"
    again.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM items").fetchone()[0] == 0


def test_an_object_store_snapshot_without_a_writable_temp_folder_is_a_config_error(monkeypatch):
    def no_folder(**_):
        raise FileNotFoundError(2, "No usable temporary directory found")

    monkeypatch.setattr(tempfile, "mkdtemp", no_folder)
    storage = S3Storage(storage_type="S3", s3_bucket_name="b", s3_endpoint="http://127.0.0.1:1")
    with pytest.raises(AirbyteTracedException) as raised:
        ObjectFile(storage, "11", 5).open(writable=True)
    assert raised.value.failure_type == FailureType.config_error
    assert "set TMPDIR to a writable folder" in raised.value.message
