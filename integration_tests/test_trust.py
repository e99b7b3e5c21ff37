"""What users see before and during a sync: early validation, dry run, progress, and logs free of personal data."""

from __future__ import annotations

import json
import threading

from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import TRACK, catalog, config_for, record, run_connector, state, stream_messages

USERS_SCHEMA = {
    "type": "object",
    "properties": {
        "seq": {"type": "integer"},
        "email": {"type": "string"},
        "event": {"type": "string"},
        "ts": {"type": "integer"},
        "identities": {"type": "object", "properties": {"connection": {"type": "string"}}},
    },
}


def test_a_misspelt_column_fails_before_any_request_naming_the_closest_column(sandbox):
    def source_that_never_ends():
        yield from stream_messages(10)
        threading.Event().wait()  # stdin stays open: only a connector that fails before reading on can end

    api = {**TRACK, "event_column": "identities.conection"}
    run = run_connector(
        "write",
        config_for(sandbox, api),
        source_that_never_ends(),
        catalog_json=catalog(schema=USERS_SCHEMA),
        timeout=120,
    )
    assert run.returncode != 0
    assert run.errors[0]["failure_type"] == "config_error"
    assert run.errors[0]["message"] == (
        "event_column 'identities.conection' is not in stream 'users'; did you mean 'identities.connection'?"
    )
    assert sandbox.state.snapshot()["requests"] == 0


def test_track_events_keyed_by_heap_user_id(sandbox):
    api = {"api_type": "track", "event_column": "event", "user_id_column": "uid", "property_columns": "seq"}
    messages = [
        record(0, uid="12345"),
        record(1, uid=678),
        record(2, uid="not-a-number"),
        record(3, uid=2**53),
        state(3),
    ]
    run = run_connector("write", config_for(sandbox, api), messages)
    assert run.returncode == 0, run.stderr
    events = sandbox.items("events")
    assert [(e["user_id"], "identity" in e) for e in events] == [("12345", False), ("678", False)]
    assert run.summary["unmappable_by_reason"] == {"user_id is not a whole number from 0 to 2^53 - 1": 2}


def test_identity_and_user_id_together_are_a_config_error(sandbox):
    api = {**TRACK, "user_id_column": "uid"}
    run = run_connector("write", config_for(sandbox, api), stream_messages(1))
    assert run.returncode != 0
    assert "set exactly one of identity_column and user_id_column" in run.errors[0]["message"]


def test_dry_run_maps_and_counts_but_sends_nothing_and_passes_no_state(sandbox):
    run = run_connector("write", config_for(sandbox, dry_run=True, dry_run_payloads=3), stream_messages(2500))
    assert run.returncode == 0, run.stderr
    assert sandbox.state.snapshot()["requests"] == 0
    assert run.states == []
    payloads = [line for line in run.logs if line.startswith("Dry run: record ")]
    assert len(payloads) == 3
    first = json.loads(payloads[0].split("\n", 1)[1])
    assert first["identity"] == "user0@example.com" and first["event"] == "Signed Up"
    assert run.summary["records_delivered"] == 0 and run.summary["requests"] == 0
    assert run.summary["dry_run"] is True and run.summary["records_that_would_be_sent"] == 2500
    assert any(
        "2,500 records read, 0 rejected" in line and "to track: 2,500 read, 2,500 would be sent, " in line
        for line in run.logs
        if line.startswith("Dry run finished")
    )
    assert "Dry run: 3 STATE messages withheld." in run.logs


def test_the_dry_run_flag_needs_no_network_at_all():
    config = {"app_id": "11", "base_url": "https://heap.invalid", "api": TRACK}
    run = run_connector("write", config, stream_messages(50), extra_args=["--dry-run"])
    assert run.returncode == 0, run.stderr
    assert run.summary["records_that_would_be_sent"] == 50 and run.summary["records_delivered"] == 0
    assert sum(line.startswith("Dry run: record ") for line in run.logs) == 10


def test_progress_is_logged_at_a_steady_interval_during_the_sync():
    with HeapSandbox(Faults(latency=1.5)) as sandbox:
        config = config_for(sandbox, progress_interval_seconds=1)
        run = run_connector("write", config, stream_messages(6_000))
    assert run.returncode == 0, run.stderr
    progress = [line for line in run.logs if line.startswith("Progress after")]
    assert progress and "records read" in progress[0] and "in flight" in progress[0]
    final = [line for line in run.logs if line.startswith("Sync finished after")]
    assert final and "6,000 records read, 0 rejected" in final[0] and "6,000 accepted by Heap" in final[0]


PERSONAL = {
    "email": "jane.personal@private-mail.example",
    "name": "Janet Quinlan-Personal",
    "phone": "+44 7700 900123",
}


def personal(seq):
    data = {**PERSONAL, "email": f"{seq}.{PERSONAL['email']}"}
    if seq == 5:
        data["note"] = f"POISON {PERSONAL['name']}"
    if seq == 7:
        data["email"] = "x" * 300 + PERSONAL["email"]
    return record(seq, **data)


def assert_no_personal_data(run):
    output = run.stdout + run.stderr
    for value in (*PERSONAL.values(), "jane.person", "private-mail"):
        assert value not in output, f"{value!r} leaked"


def test_personal_data_never_reaches_the_logs_through_rejections_retries_or_crashes():
    api = {**TRACK, "property_columns": "name,phone,note"}
    faults = Faults(fail_rate=0.3, poison="POISON", echo_body=True, seed=5)
    with HeapSandbox(faults) as sandbox:
        run = run_connector("write", config_for(sandbox, api), stream_messages(3_000, make=personal))
    assert run.returncode == 0, run.stderr
    assert run.summary["records_rejected"] == 1 and run.summary["retries"] > 0
    assert any("Retrying" in line for line in run.logs)
    assert any(line.startswith("Record 6 of stream 'users' to track was rejected by Heap") for line in run.logs)
    assert_no_personal_data(run)

    with HeapSandbox(Faults(fail_rate=1.0, echo_body=True)) as sandbox:
        crashed = run_connector(
            "write", config_for(sandbox, api, max_retry_seconds=1), stream_messages(50, make=personal)
        )
    assert crashed.returncode != 0 and "retry budget" in crashed.errors[0]["message"]
    assert_no_personal_data(crashed)

    with HeapSandbox(Faults(fail_rate=1.0, fail_status=404, echo_body=True)) as sandbox:
        fatal = run_connector("write", config_for(sandbox, api), stream_messages(50, make=personal))
    assert fatal.returncode != 0 and "HTTP 404" in fatal.errors[0]["message"]
    assert_no_personal_data(fatal)


def test_dry_run_payloads_are_the_one_place_personal_data_is_shown(sandbox):
    api = {**TRACK, "property_columns": "name"}
    run = run_connector("write", config_for(sandbox, api, dry_run=True), stream_messages(3, make=personal))
    assert PERSONAL["name"] in run.stdout
    lines_with_data = [line for line in run.logs if PERSONAL["name"] in line]
    assert lines_with_data and all(line.startswith("Dry run: record ") for line in lines_with_data)
