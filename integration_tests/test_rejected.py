"""Rejected records: kept in the user's bucket with their reasons (a real S3-compatible server on 127.0.0.1,
moto's standalone server), and counted on every STATE the way the platform checks."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import time

import pytest

from destination_heap_analytics import rejected
from destination_heap_analytics.config import S3Storage
from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import StoreProxy, catalog, config_for, record, run_connector, state


def span_with_every_kind_of_rejection():
    """Two spans: the first with one record Heap refuses, one that cannot be mapped and one unreadable
    line naming the stream among good ones; the second clean."""
    return [
        record(0),
        record(1, note="POISON", big=2**64 + 1),
        record(2, email=None),
        {"type": "RECORD", "record": {"stream": "users", "data": "not an object", "emitted_at": 1}},
        record(3),
        state(3),
        record(4),
        record(5),
        state(5),
    ]


def test_every_rejected_record_is_kept_with_its_reason_and_counted_on_its_state(s3, bucket):
    storage = s3.storage(bucket, bucket_path="heap/rejected", format="JSONL")
    with HeapSandbox(Faults(poison="POISON")) as sandbox:
        config = config_for(sandbox, object_storage_config=storage)
        run = run_connector("write", config, span_with_every_kind_of_rejection(), catalog_json=catalog(sync_id=4242))
        delivered = sorted(event["properties"]["seq"] for event in sandbox.items("events"))
    assert run.returncode == 0, run.stderr
    assert delivered == [0, 3, 4, 5]
    assert [s["destinationStats"] for s in run.states] == [
        {"recordCount": 2.0, "rejectedRecordCount": 3.0},
        {"recordCount": 2.0, "rejectedRecordCount": 0.0},
    ]
    objects = s3.objects(bucket)
    assert all(key.startswith("heap/rejected/4242/users/") and key.endswith(".jsonl") for key in objects)
    rows = rows_in(objects)
    assert [(row["_heap_position"], row["_heap_rejected_reason"], row["_heap_rejected_field"]) for row in rows] == [
        (2, 'HTTP 400 ("error property value refused")', None),
        (3, "missing identity", "email"),
        (4, "RECORD whose data is not an object", None),
    ]
    assert rows[0]["note"] == "POISON" and rows[0]["seq"] == 1, "the record's columns, as they came"
    assert rows[0]["big"] == 2**64 + 1 and list(rows[0])[4:6] == ["note", "big"], "exactly, in order"
    assert rows[1]["seq"] == 2 and rows[0]["_heap_emitted_at"] == 1666325394622
    assert rows[2]["_heap_raw"] == json.dumps(span_with_every_kind_of_rejection()[3]), "the line, kept as it came"
    assert run.summary["rejected_records_stored"] == 3
    assert run.summary["rejected_records_store"] == "s3://heap-bucket/heap/rejected/4242"
    assert "3 rejected records kept in s3://heap-bucket/heap/rejected/4242" in run.logs
    assert not any("POISON" in line for line in run.logs), "the store holds values; the logs do not"


def test_csv_files_hold_many_records_under_the_namespace_and_stream(s3, bucket):
    messages = [record(n, email=None) for n in range(50)] + [record(50)]
    for message in messages:
        message["record"]["namespace"] = "crm"
    configured = catalog(sync_id=7)
    configured["streams"][0]["stream"]["namespace"] = "crm"
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, object_storage_config=s3.storage(bucket))
        run = run_connector("write", config, [*messages, {**state(50)}], catalog_json=configured)
    assert run.returncode == 0, run.stderr
    objects = s3.objects(bucket)
    assert len(objects) == 1, "one file of many records, not one object per record"
    (key, body) = next(iter(objects.items()))
    assert key.startswith("7/crm/users/") and key.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 50 and rows[0]["_heap_rejected_reason"] == "missing identity"
    assert rows[0]["seq"] == "0" and rows[0]["email"] == "" and rows[0]["_heap_namespace"] == "crm"


def test_a_store_that_cannot_be_written_fails_the_sync_before_any_state_covering_a_rejected_record(s3):
    storage = s3.storage("no-such-bucket")

    def messages():
        yield from (record(0), state(0))
        time.sleep(14)
        yield from (record(1, email=None), record(2), state(2))

    with HeapSandbox() as sandbox:
        run = run_connector("write", config_for(sandbox, object_storage_config=storage), messages())
    assert run.returncode != 0
    assert [s["stream"]["stream_state"]["seq"] for s in run.states] == [0]
    error = run.errors[0]
    assert error["failure_type"] == "system_error"
    assert "s3://no-such-bucket" in error["message"] and "NoSuchBucket" in error["message"]
    assert "test" not in error["message"].replace("test_", ""), "no credential in the message"


def test_without_a_store_the_counts_are_the_same(s3):
    with HeapSandbox(Faults(poison="POISON")) as sandbox:
        run = run_connector("write", config_for(sandbox), span_with_every_kind_of_rejection())
    assert run.returncode == 0, run.stderr
    assert [s["destinationStats"] for s in run.states] == [
        {"recordCount": 2.0, "rejectedRecordCount": 3.0},
        {"recordCount": 2.0, "rejectedRecordCount": 0.0},
    ]
    assert "rejected_records_store" not in run.summary


def test_check_proves_the_bucket_works_and_names_a_missing_one(s3, bucket):
    with HeapSandbox() as sandbox:
        good = run_connector("check", config_for(sandbox, object_storage_config=s3.storage(bucket)))
        missing = run_connector("check", config_for(sandbox, object_storage_config=s3.storage("missing-bucket")))
    assert good.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    assert s3.objects(bucket) == {}, "the test object is deleted"
    status = missing.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "bucket 'missing-bucket'" in status["message"] and "NoSuchBucket" in status["message"]


def rows_in(objects: dict[str, bytes]) -> list[dict]:
    return sorted(
        (json.loads(line) for body in objects.values() for line in body.splitlines()),
        key=lambda row: row["_heap_position"],
    )


def test_airbytes_standard_layout_keys_write_gzipped_files_where_the_formats_say(s3, bucket):
    storage = s3.storage(
        bucket,
        bucket_path="heap",
        format={"format_type": "JSONL"},
        compression={"compression_type": "GZIP"},
        path_format="${STREAM_NAME}/${SYNC_ID}/",
        file_name_format="rejected_{timestamp}_{part_number}{format_extension}",
    )
    with HeapSandbox(Faults(poison="POISON")) as sandbox:
        config = config_for(sandbox, object_storage_config=storage)
        run = run_connector("write", config, span_with_every_kind_of_rejection(), catalog_json=catalog(sync_id=77))
    assert run.returncode == 0, run.stderr
    objects = s3.objects(bucket)
    assert objects and all(re.fullmatch(r"heap/users/77/rejected_\d{13}_\d+\.jsonl\.gz", key) for key in objects)
    rows = rows_in({key: gzip.decompress(body) for key, body in objects.items()})
    assert [row["_heap_position"] for row in rows] == [2, 3, 4]
    assert run.summary["rejected_records_store"] == "s3://heap-bucket/heap", "the folders before the first variable"


def test_a_part_the_store_refuses_fails_the_sync_and_no_state_passes_over_it(s3, bucket):
    """Rows reach the part size (8 MB) before any STATE, and the store refuses that large a write: the sync
    fails naming the store, and no STATE passes (it used to be turned into one record's reason)."""
    big = "x" * 100_000
    messages = [record(n, email=None, padding=big) for n in range(90)] + [state(89)]
    with StoreProxy(s3.url, refuse_bodies_over=1_000_000) as proxy, HeapSandbox() as sandbox:
        storage = {**s3.storage(bucket, format="JSONL"), "s3_endpoint": proxy.url}
        config = config_for(sandbox, object_storage_config=storage, request_timeout_seconds=20)
        run = run_connector("write", config, messages)
    assert proxy.refused >= 1
    assert run.returncode != 0 and run.states == []
    assert "The rejected-records store" in run.errors[0]["message"] and run.errors[0]["failure_type"] == "system_error"


def test_a_store_that_trickles_is_cut_off_by_the_deadline_in_write_and_in_check(s3, bucket):
    with StoreProxy(s3.url, trickle=True) as proxy, HeapSandbox() as sandbox:
        storage = {**s3.storage(bucket), "s3_endpoint": proxy.url}
        config = config_for(sandbox, object_storage_config=storage, request_timeout_seconds=3)
        # a run the deadline did not end is killed at 60 s and carries no error: the asserts below fail
        run = run_connector("write", config, [record(0, email=None), record(1), state(1)], timeout=60)
        checked = run_connector("check", config, timeout=60)
    assert run.returncode != 0 and run.states == []
    assert "did not answer a write within 3s" in run.errors[0]["message"]
    status = checked.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "did not answer within 3s" in status["message"]


def test_every_kind_of_refusal_is_stored_as_valid_json_naming_its_stream(s3, bucket):
    """Envelopes without data, lines deeper than the parser reads, values JSON cannot hold, integers too long
    for Python: each is its stream's rejected record (counted so on its STATE) and a row any JSON reader
    takes."""
    deep = '{"a":' * 1500 + "1" + "}" * 1500
    lines = [
        json.dumps(record(0)),
        json.dumps({"type": "RECORD", "record": {"stream": "users", "data": "not an object", "emitted_at": 1}}),
        '{"type":"RECORD","record":{"stream":"users","data":' + deep + ',"emitted_at":1}}',
        '{"type":"RECORD","record":{"stream":"users","data":{"seq":3,"email":null,"x":NaN,"y":1e400},"emitted_at":1}}',
        '{"type":"RECORD","record":{"stream":"users","data":{"seq":4,"n":' + "9" * 5000 + '},"emitted_at":1}}',
        '{"type":"RECORD","record":{"stream":"users","data":{"seq":5,"email":"a@b.c","n":'
        + "8" * 2000
        + ',"event":"E","ts":1},"emitted_at":1}}',
        json.dumps(state(5)),
    ]
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, object_storage_config=s3.storage(bucket, format="JSONL"))
        run = run_connector("write", config, [line.encode() for line in lines])
        events = sandbox.items("events")
    assert run.returncode == 0, run.stderr
    assert [s["destinationStats"] for s in run.states] == [{"recordCount": 2.0, "rejectedRecordCount": 4.0}]
    assert len(events) == 2 and len(events[1]["properties"]["n"]) == 1023, "a long integer cut like long text"

    def strict(line):
        return json.loads(line, parse_constant=lambda constant: pytest.fail(f"{constant} in a stored row"))

    rows = sorted(
        (strict(line) for body in s3.objects(bucket).values() for line in body.splitlines()),
        key=lambda row: row["_heap_position"],
    )
    assert [row["_heap_position"] for row in rows] == [2, 3, 4, 5]
    assert all(row["_heap_stream"] == "users" for row in rows)
    assert rows[0]["_heap_raw"].startswith('{"type": "RECORD"') and '"not an object"' in rows[0]["_heap_raw"]
    assert rows[1]["_heap_rejected_reason"] == "JSON nested too deeply" and rows[1]["_heap_raw"].endswith("}}")
    assert (rows[2]["x"], rows[2]["y"], rows[2]["seq"]) == ("NaN", "Infinity", 3) and len(rows[2]["_heap_changed"]) == 2
    assert rows[3]["n"] == "9" * 5000 and "4300 digits" in rows[3]["_heap_changed"][0]


def test_a_record_refused_by_two_mappings_is_stored_once_and_streams_keep_their_own_folders(s3, bucket):
    names = ["a/b", "a_b"]
    mappings = [
        {"stream": name, "api": {"api_type": api, "identity_column": "email", **extra}}
        for name in names
        for api, extra in (("add_user_properties", {}), ("track", {"event_name": "Seen"}))
    ]
    configured = catalog(*names, sync_id=8)
    messages = [record(n, stream=name, email=None) for n, name in enumerate(names)]
    with HeapSandbox() as sandbox:
        storage = s3.storage(bucket, format="JSONL")
        config = config_for(sandbox, mappings=mappings, object_storage_config=storage)
        run = run_connector("write", config, [*messages, state(0, "a/b"), state(1, "a_b")], catalog_json=configured)
    assert run.returncode == 0, run.stderr
    objects = s3.objects(bucket)
    assert sorted(key.rsplit("/", 1)[0] for key in objects) == ["8/a%2Fb", "8/a_b"]
    rows = rows_in(objects)
    assert [(row["_heap_stream"], row["seq"]) for row in rows] == [("a/b", 0), ("a_b", 1)], "once each"


def test_states_waiting_for_the_store_are_held_within_the_bound(s3, bucket):
    """Past 10,000 STATEs waiting for rejected rows, the rows are written and the STATEs pass, without waiting
    for the store's next due write."""
    messages = [record(0, email=None), *(state(0) for _ in range(10_500)), record(1, email=None), state(1)]
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, object_storage_config=s3.storage(bucket, format="JSONL"))
        run = run_connector("write", config, messages)
    assert run.returncode == 0, run.stderr
    assert len(run.states) == 10_501
    assert len(s3.objects(bucket)) == 2, "one write when the bound was reached, one at the end"


def test_rows_of_many_streams_wait_within_one_bound_in_memory(s3, bucket, monkeypatch):
    """Each stream's rows stay under a part's size, all of them together pass the bound: every stream's rows are
    written then, so a catalog of many streams never holds a part of each in memory."""
    monkeypatch.setattr(rejected, "PART_BYTES", 10_000)
    monkeypatch.setattr(rejected, "WAITING_BYTES", 20_000)
    store = rejected.S3Store(S3Storage(**s3.storage(bucket, format="JSONL")), "sync-1", 30.0)
    written = []
    for position in range(1, 401):
        stream = (f"stream{position % 20}", None)
        store.add(rejected.RejectedRecord(stream, position, "missing identity", data={"note": "x" * 100}))
        assert store.total_waiting < 20_000 + 500, "one row past the bound at most"
        written.append(store.stored)
    store.flush()
    assert store.stored == 400 and store.total_waiting == 0
    assert len(set(written)) > 4, "the rows were written while they came, not only at the end"
    rows = [json.loads(line) for body in s3.objects(bucket).values() for line in body.splitlines()]
    assert sorted(row["_heap_position"] for row in rows) == list(range(1, 401))
