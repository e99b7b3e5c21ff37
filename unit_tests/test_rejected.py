"""The rejected-records store's rows and names: pure parts (the store itself is tested against a real
S3-compatible server in integration_tests/test_rejected.py)."""

import csv
import io
import json
from datetime import datetime, timezone

import pytest

from destination_heap_analytics.config import HeapConfig, S3Storage
from destination_heap_analytics.messages import parse_json
from destination_heap_analytics.rejected import (
    CONTEXT,
    RAW_CHARACTERS,
    RejectedRecord,
    csv_rows,
    jsonl,
    key_part,
    object_key,
    store_for,
    store_location,
    stored_row,
)

RECORDS = [
    RejectedRecord(("users", None), 3, "missing identity", "email", {"seq": 2, "big": 2**70, "n": {"a": [1]}}, 1.5),
    RejectedRecord(("users", "crm"), 4, "RECORD whose data is not an object", raw=b'{"record":{"data":[1]}}\n'),
]


def strict_json(line: bytes):
    """JSON as RFC 8259 defines it: no NaN or Infinity (Python's reader takes them unless told not to)."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def rows_of(records):
    return [strict_json(line) for line in jsonl([stored_row(record) for record in records]).splitlines()]


def test_a_row_is_the_records_columns_then_the_heap_context():
    rows = rows_of(RECORDS)
    assert rows[0] == {
        "seq": 2,
        "big": 2**70,
        "n": {"a": [1]},
        "_heap_rejected_reason": "missing identity",
        "_heap_rejected_field": "email",
        "_heap_stream": "users",
        "_heap_namespace": None,
        "_heap_position": 3,
        "_heap_emitted_at": 1.5,
        "_heap_changed": None,
        "_heap_raw": None,
    }
    assert list(rows[0])[3:] == list(CONTEXT)
    assert rows[1]["_heap_raw"] == '{"record":{"data":[1]}}', "an envelope refused: the line kept as it came"
    assert rows[1]["_heap_namespace"] == "crm" and "seq" not in rows[1]


def test_values_no_json_reader_takes_are_stored_as_text_and_named():
    data = parse_json(b'{"a": NaN, "b": {"c": [Infinity, -Infinity]}, "d": 1e400, "e": "\\ud800"}')
    (row,) = rows_of([RejectedRecord(("s", None), 1, "why", data=data)])
    assert (row["a"], row["b"]["c"], row["d"]) == ("NaN", ["Infinity", "-Infinity"], "Infinity")
    assert row["e"] == "?"
    changed = row["_heap_changed"]
    assert len(changed) == 5 and changed[0].startswith("a: nan") and changed[1].startswith("b.c[0]: inf")


def test_an_integer_too_long_to_read_is_stored_as_its_text():
    digits = "7" * 5000
    data = parse_json(b'{"n": ' + digits.encode() + b"}")
    (row,) = rows_of([RejectedRecord(("s", None), 1, "why", data=data)])
    assert row["n"] == digits and "more than 4300 digits" in row["_heap_changed"][0]


@pytest.mark.parametrize(("depth", "as_columns"), [(300, True), (900, False), (5000, False)])
def test_a_record_too_deep_to_write_is_kept_as_its_raw_line(depth, as_columns):
    data: dict = {}
    inner = data
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    line = b'{"a":' * depth + b"{}" + b"}" * depth
    (row,) = rows_of([RejectedRecord(("s", None), 1, "record nested too deeply", data=data, raw=line)])
    if as_columns:
        assert row["a"]["a"] and row["_heap_raw"] is None and row["_heap_changed"] is None
    else:
        assert "a" not in row and row["_heap_raw"] == line.decode()[:RAW_CHARACTERS]
        assert row["_heap_changed"][0] == "record nested too deeply to store as columns: kept as its raw line"


def test_a_long_raw_line_is_cut_and_marked():
    line = b'"' + b"x" * 100_000 + b'"'
    (row,) = rows_of([RejectedRecord(("s", None), 1, "RECORD whose data is not an object", data="x", raw=line)])
    assert len(row["_heap_raw"]) == RAW_CHARACTERS and row["_heap_changed"] == [
        f"raw line cut to {RAW_CHARACTERS} characters"
    ]


def test_a_record_column_named_like_the_context_is_kept_under_another_name():
    (row,) = rows_of([RejectedRecord(("s", None), 1, "why", data={"_heap_position": "mine"})])
    assert row["_heap_position"] == 1 and row["_heap_record_heap_position"] == "mine"
    assert row["_heap_changed"] == ["the record's column _heap_position stored as _heap_record_heap_position"]


def test_csv_rows_put_the_records_columns_first_and_json_for_other_values():
    rows = list(csv.DictReader(io.StringIO(csv_rows([stored_row(record) for record in RECORDS]).decode())))
    header = list(rows[0])
    assert header == ["seq", "big", "n", *CONTEXT]
    assert rows[0]["seq"] == "2" and rows[0]["big"] == str(2**70) and json.loads(rows[0]["n"]) == {"a": [1]}
    assert rows[0]["_heap_rejected_reason"] == "missing identity" and rows[1]["seq"] == ""
    assert rows[1]["_heap_raw"] == '{"record":{"data":[1]}}'


def test_names_become_one_key_segment_each_and_never_share_one():
    assert key_part("a/b") == "a%2Fb" != key_part("a_b") == "a_b"
    assert key_part("a%2Fb") == "a%252Fb"
    assert key_part("\ud800x") == "\\ud800x" != key_part("\\ud800x") == "%5Cud800x"
    assert key_part("") == "%00"


def test_no_store_unless_one_is_configured():
    assert store_for(None, "1", 60).where is None
    config = HeapConfig.parse(
        {
            "app_id": "11",
            "api": {"api_type": "add_user_properties", "identity_column": "e"},
            "object_storage_config": {"storage_type": "S3", "s3_bucket_name": " b ", "bucket_path": "/x/y/"},
        }
    )
    storage = config.object_storage_config
    assert isinstance(storage, S3Storage) and storage.where == "s3://b/x/y" and storage.format.format_type == "CSV"


NOW = datetime(2026, 12, 4, 9, 5, 7, 250000, tzinfo=timezone.utc)


def storage(**options):
    return S3Storage(storage_type="S3", s3_bucket_name="b", **options)


def test_files_go_where_airbytes_object_storage_puts_them_by_default():
    assert object_key(storage(bucket_path="heap/rejected"), "42", ("users", None), 3, NOW) == (
        "heap/rejected/42/users/2026_12_04_1796375107250_3.csv"
    )
    assert (
        object_key(storage(format="JSONL"), "42", ("a/b", "crm"), 1, NOW)
        == "42/crm/a%2Fb/2026_12_04_1796375107250_1.jsonl"
    )
    assert store_location(storage(bucket_path="heap"), "42") == "s3://b/heap/42"


def test_path_and_file_name_formats_fill_every_variable_and_gzip_names_its_files():
    layout = storage(
        bucket_path="x",
        compression={"compression_type": "GZIP"},
        path_format="${NAMESPACE}/${STREAM_NAME}/${YEAR}/${MONTH}/${DAY}/${HOUR}${MINUTE}${SECOND}/${EPOCH}/${SYNC_ID}",
        file_name_format="{sync_id}-{date}-{timestamp}-{part_number}{format_extension}",
    )
    assert object_key(layout, "7", ("users", None), 2, NOW) == (
        "x/users/2026/12/04/090507/1796375107/7/7-2026_12_04-1796375107250-2.csv.gz"
    )
    assert store_location(layout, "7") == "s3://b/x", "the fixed folders before the first variable of a file"
    assert store_location(storage(path_format="heap/${SYNC_ID}/${STREAM_NAME}"), "7") == "s3://b/heap/7"
