"""Rejected records: kept in the user's bucket with their reasons (a real S3-compatible server on 127.0.0.1,
moto's standalone server), and counted on every STATE the way the platform checks."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import S3Server, catalog, config_for, record, run_connector, state

BUCKET = "heap-rejected"


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        yield server


@pytest.fixture
def bucket(s3):
    s3.client().create_bucket(Bucket=BUCKET)
    yield BUCKET
    client = s3.client()
    for key in s3.objects(BUCKET):
        client.delete_object(Bucket=BUCKET, Key=key)
    client.delete_bucket(Bucket=BUCKET)


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
    rows = sorted(
        (json.loads(line) for body in objects.values() for line in body.splitlines()), key=lambda r: r["position"]
    )
    assert [(row["position"], row["rejected_reason"], row["rejected_field"]) for row in rows] == [
        (2, 'HTTP 400 ("error property value refused")', None),
        (3, "missing identity", "email"),
        (4, "RECORD whose data is not an object", None),
    ]
    assert rows[0]["data"]["note"] == "POISON" and rows[0]["data"]["seq"] == 1, "the record as it came"
    assert rows[0]["data"]["big"] == 2**64 + 1 and list(rows[0]["data"])[-2:] == ["note", "big"], "exactly"
    assert rows[1]["data"]["seq"] == 2 and rows[0]["emitted_at"] == 1666325394622
    assert run.summary["rejected_records_stored"] == 3
    assert run.summary["rejected_records_store"] == "s3://heap-rejected/heap/rejected/4242"
    assert "3 rejected records kept in s3://heap-rejected/heap/rejected/4242" in run.logs
    assert not any("POISON" in line for line in run.logs), "the store holds values; the logs do not"


def test_csv_files_hold_many_records_under_the_namespace_and_stream(s3, bucket):
    messages = [record(n, email=None) for n in range(50)]
    for message in messages:
        message["record"]["namespace"] = "crm"
    configured = catalog(sync_id=7)
    configured["streams"][0]["stream"]["namespace"] = "crm"
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, object_storage_config=s3.storage(bucket))
        run = run_connector("write", config, [*messages, {**state(49)}], catalog_json=configured)
    assert run.returncode == 0, run.stderr
    objects = s3.objects(bucket)
    assert len(objects) == 1, "one file of many records, not one object per record"
    (key, body) = next(iter(objects.items()))
    assert key.startswith("7/crm/users/") and key.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == 50 and rows[0]["rejected_reason"] == "missing identity"
    assert json.loads(rows[0]["data"])["seq"] == 0


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
