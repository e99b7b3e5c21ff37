"""What a user sees of a sync: progress lines from Heap's side, rejection lines naming their mapping, and a
summary that matches the STATEs' counts; through `main.py write` against a paced sandbox."""

from __future__ import annotations

import re

from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import config_for, record, run_connector, state

LIMIT = 3_000
"""Items a minute Heap allows in this test, and the connector is told: about 5 s for the records below."""
TO_TRACK = {"api_type": "track", "event_column": "event", "identity_column": "email", "property_columns": "note"}
TO_PROPERTIES = {"api_type": "add_user_properties", "identity_column": "email", "property_columns": "note"}
MAPPINGS = [{"stream": "users", "api": TO_TRACK}, {"stream": "users", "api": TO_PROPERTIES}]


def messages(count: int) -> list[dict]:
    """Records of one stream with a STATE every 50; record 5 holds what Heap refuses, record 7 no identity."""
    out: list[dict] = []
    for seq in range(count):
        data = {"email": f"user{seq}@example.com", "note": "POISON" if seq == 5 else "fine"}
        if seq == 7:
            data["email"] = None
        out.append(record(seq, **data))
        if (seq + 1) % 50 == 0:
            out.append(state(seq))
    return out


def numbers(line: str, pattern: str) -> list[float]:
    return [float(value.replace(",", "")) for value in re.findall(pattern, line)]


def test_progress_lines_and_the_summary_speak_from_heaps_side_and_match_the_states():
    faults = Faults(rate_limit=LIMIT, rate_window=60.0, poison="POISON")
    with HeapSandbox(faults) as sandbox:
        config = config_for(sandbox, mappings=MAPPINGS, max_events_per_minute=LIMIT, progress_interval_seconds=1)
        run = run_connector("write", config, messages(150))
        received = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert 429 not in received["statuses"], "paced under the limit"

    progress = [line for line in run.logs if line.startswith("Progress after")]
    assert len(progress) >= 3, "a line every second of a sync paced over about five"
    for line in progress:
        elapsed = numbers(line, r"^Progress after (\d+)s")[0]
        assert numbers(line, r"([\d.]+)s waiting on the pace \(wall time\)")[0] <= elapsed + 1, "waits not summed"
        assert "ETA unknown" in line and "records/s over the last 1s" in line
        assert "stream 'users' to track: " in line and "stream 'users' to add_user_properties: " in line
    shares = [numbers(line, r"limit: 3,000 items/min, (\d+)% of it used")[0] for line in progress]
    # A line a second sees a request of 3% of a minute or none, and split retries count (Heap receives them):
    # each share swings, their mean is the pace used while it binds.
    assert 60 <= sum(shares) / len(shares) <= 150, shares
    assert any("in flight clear in about" in line for line in progress)

    final = next(line for line in run.logs if line.startswith("Sync finished after"))
    assert 60 <= numbers(final, r"limit: 3,000 items/min, (\d+)% of it used")[0] <= 150
    assert "150 records read, 2 rejected (1 by Heap, 1 not sendable)" in final
    assert "stream 'users' to track: 150 read, 148 accepted by Heap, 1 refused by Heap (HTTP 400 x1)" in final
    assert "stream 'users' to add_user_properties: 150 read, 148 accepted by Heap, 1 refused by Heap" in final
    assert final.count("1 not sendable (missing identity x1), 0 in flight") == 2

    summary = run.summary
    states = [message["state"]["destinationStats"] for message in run.messages if message["type"] == "STATE"]
    assert len(states) == 3
    assert summary["records_read"] == 150 and summary["records_delivered"] == 148
    assert summary["records_delivered"] == sum(stats["recordCount"] for stats in states)
    assert summary["records_rejected"] + summary["records_unmappable"] == sum(
        stats["rejectedRecordCount"] for stats in states
    )
    assert [
        (mapping["api"], mapping["records_read"], mapping["records_accepted"]) for mapping in summary["mappings"]
    ] == [
        ("track", 150, 148),
        ("add_user_properties", 150, 148),
    ]


def test_each_rejection_line_names_its_mapping_and_position_and_each_reason_is_capped_then_counted(sandbox):
    """Thirty records without an identity: ten lines for each mapping, then one count of the rest each; the
    source's word that the stream ended brings a line of its mappings' counts."""
    records = [record(seq, email=None if seq < 30 else f"u{seq}@example.com", note="x") for seq in range(40)]
    ended = {"stream_descriptor": {"name": "users"}, "status": "COMPLETE"}
    trace = {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": ended}}
    run = run_connector("write", config_for(sandbox, mappings=MAPPINGS), [*records, trace, state(39)])
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.logs if "cannot be sent to Heap" in line]
    assert len(lines) == 20
    assert lines[0] == "Record 1 of stream 'users' to track cannot be sent to Heap: missing identity (column 'email')."
    assert lines[1].startswith("Record 1 of stream 'users' to add_user_properties cannot be sent to Heap")
    assert lines[-1].endswith("Later ones of this mapping for this reason are counted, not logged.")
    assert "stream 'users' to track: 20 more records rejected (missing identity) than were logged." in run.logs
    assert run.summary["records_unmappable"] == 30 and run.summary["records_delivered"] == 10
    (end,) = [line for line in run.logs if line.startswith("The source ended stream 'users' (COMPLETE).")]
    assert "stream 'users' to track: 40 read" in end and "stream 'users' to add_user_properties: 40 read" in end
