"""The rejected-records store's rows and names: pure parts (the store itself is tested against a real
S3-compatible server in integration_tests/test_rejected.py)."""

import csv
import io
import json

from destination_heap_analytics.config import HeapConfig, S3Storage
from destination_heap_analytics.rejected import RejectedRecord, csv_rows, jsonl, key_part, store_for

RECORDS = [
    RejectedRecord(("users", None), 3, "missing identity", "email", {"seq": 2, "big": 2**70, "n": {"a": [1]}}, 1.5),
    RejectedRecord(("users", None), 4, "RECORD whose data is not an object"),
]


def test_jsonl_rows_keep_the_data_exactly_beside_the_reason():
    rows = [json.loads(line) for line in jsonl(RECORDS).splitlines()]
    assert rows[0] == {
        "rejected_reason": "missing identity",
        "rejected_field": "email",
        "position": 3,
        "emitted_at": 1.5,
        "data": {"seq": 2, "big": 2**70, "n": {"a": [1]}},
    }
    assert rows[1]["data"] is None and rows[1]["rejected_field"] is None


def test_csv_rows_hold_the_data_as_json_text():
    rows = list(csv.DictReader(io.StringIO(csv_rows(RECORDS).decode())))
    assert rows[0]["rejected_reason"] == "missing identity" and rows[0]["rejected_field"] == "email"
    assert json.loads(rows[0]["data"]) == {"seq": 2, "big": 2**70, "n": {"a": [1]}}
    assert rows[1]["data"] == "null" and rows[1]["rejected_field"] == ""


def test_names_become_one_key_segment_each():
    assert key_part("a/b") == "a_b"
    assert key_part("\ud800x") == "\\ud800x"
    assert key_part("") == "_"


def test_no_store_unless_one_is_configured():
    assert store_for(None, "1").where is None
    config = HeapConfig.parse(
        {
            "app_id": "11",
            "api": {"api_type": "add_user_properties", "identity_column": "e"},
            "object_storage_config": {"storage_type": "S3", "s3_bucket_name": " b ", "bucket_path": "/x/y/"},
        }
    )
    storage = config.object_storage_config
    assert isinstance(storage, S3Storage) and storage.where == "s3://b/x/y" and storage.format == "CSV"
