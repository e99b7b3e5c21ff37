"""The Airbyte platform's contract (docs/airbyte-platform.md), through `main.py write` as a subprocess:
STATE messages come back exactly as sent plus destinationStats, in order, with the platform's record counts."""

from __future__ import annotations

import copy

from integration_tests.support import (
    catalog,
    config_for,
    global_state,
    in_namespace,
    legacy_state,
    platform_state,
    run_connector,
)


def test_every_state_comes_back_as_sent_plus_destination_stats_in_order_with_the_platforms_counts(sandbox):
    messages = [
        in_namespace(0),
        in_namespace(1),
        in_namespace(2, "orders"),
        in_namespace(3, "users", "tenant_b"),
        platform_state(1, "orders"),
        in_namespace(4),
        platform_state(2, "users", "tenant_b"),
        platform_state(3),
        in_namespace(5),
        {"type": "RECORD", "record": {"stream": "users", "data": "not an object", "emitted_at": 1}},
        platform_state(4, destinationStats={"recordCount": 99.0}),
        platform_state(5),
        in_namespace(6),
        in_namespace(7, "orders"),
        global_state(6),
        in_namespace(8),
        legacy_state(7),
        legacy_state(8),
    ]
    sent = copy.deepcopy([m for m in messages if m["type"] == "STATE"])
    run = run_connector("write", config_for(sandbox), messages)
    assert run.returncode == 0, run.stderr
    out = run.of_type("STATE")
    expected_counts = [(0, 1), (0, 1), (3, 0), (1, 1), (0, 0), (1, 1), (1, 0), (0, 0)]
    assert [m["state"]["id"] for m in out] == [m["state"]["id"] for m in sent]
    for came, went, count in zip(sent, out, expected_counts, strict=True):
        delivered, rejected = count
        came["state"]["destinationStats"] = {"recordCount": delivered, "rejectedRecordCount": rejected}
        assert went == came
        assert list(went["state"])[: len(came["state"])] == list(came["state"])
    assert sorted(e["properties"]["seq"] for e in sandbox.items("events")) == [0, 1, 4, 5, 6, 8]
    assert run.summary["unmappable_by_reason"] == {
        "record of a stream not in the catalog": 3,
        "RECORD whose data is not an object": 1,
    }
    assert run.summary["records_read"] == 10


def test_records_match_the_catalog_stream_by_name_and_namespace(sandbox):
    configured = catalog("users")
    configured["streams"][0]["stream"]["namespace"] = "tenant_a"
    messages = [
        in_namespace(0, "users", "tenant_a"),
        in_namespace(1, "users", "tenant_b"),
        in_namespace(2, "users"),
        platform_state(1, "users", "tenant_a"),
    ]
    run = run_connector("write", config_for(sandbox), messages, catalog_json=configured)
    assert run.returncode == 0, run.stderr
    assert [e["properties"]["seq"] for e in sandbox.items("events")] == [0]
    assert run.summary["unmappable_by_reason"] == {"record of a stream not in the catalog": 2}
    assert [m["state"]["destinationStats"] for m in run.of_type("STATE")] == [
        {"recordCount": 1.0, "rejectedRecordCount": 0.0}
    ]


def test_a_malformed_state_is_a_clear_error_and_nothing_after_it_passes(sandbox):
    messages = [
        in_namespace(0),
        platform_state(1),
        {"type": "STATE", "state": {"type": "STREAM", "id": 2, "stream": {"stream_state": {}}}},
        in_namespace(1),
        platform_state(3),
    ]
    run = run_connector("write", config_for(sandbox), messages)
    assert run.returncode != 0
    assert [m["state"]["id"] for m in run.of_type("STATE")] == [1]
    assert run.errors[0]["message"] == (
        "The STATE message on input line 3 is malformed: a STREAM state has no stream.stream_descriptor object. "
        "Nothing after it was checkpointed."
    )
    assert "Traceback" not in run.stdout + run.stderr
