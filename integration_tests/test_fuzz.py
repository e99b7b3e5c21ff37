"""Arbitrary JSON and arbitrary bytes through the whole write path: the sync ends well and every line is counted."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_tests.heap_sandbox import HeapSandbox
from integration_tests.support import config_for, run_connector, state

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15,
)
fields = st.sampled_from(["email", "event", "ts", "seq", "a.b", "a"]) | st.text(max_size=6)


def record_line(data, emitted_at, stream):
    message = {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": emitted_at}}
    return json.dumps(message).encode()


lines = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=120),
    st.builds(
        record_line,
        st.dictionaries(fields, json_values, max_size=6) | json_values,
        st.integers() | st.floats() | json_values,
        st.sampled_from(["users", "users", "other"]) | json_values,
    ),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(lines, min_size=1, max_size=80))
def test_any_input_ends_in_exit_0_with_every_line_counted_and_no_traceback(fuzzed):
    fed = sum(1 for line in b"\n".join(fuzzed).split(b"\n") if line.strip())
    with HeapSandbox() as sandbox:
        run = run_connector("write", config_for(sandbox), [*fuzzed, state(0)])
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Traceback" not in run.stdout + run.stderr
    summary = run.summary
    assert summary["records_read"] == (
        summary["records_delivered"] + summary["records_rejected"] + summary["records_unmappable"]
    )
    assert summary["records_read"] + summary["lines_unreadable"] == fed
    assert len(run.states) == 1


protocol_fields = st.builds(
    lambda kind, record, state: json.dumps({"type": kind, "record": record, "state": state}).encode(),
    st.sampled_from(["RECORD", "STATE", "LOG"]) | json_values,
    st.fixed_dictionaries(
        {
            "stream": st.sampled_from(["users"]) | json_values,
            "namespace": json_values,
            "data": st.dictionaries(fields, json_values, max_size=4) | json_values,
            "emitted_at": st.integers() | json_values,
        }
    )
    | json_values,
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["STREAM", "GLOBAL", "LEGACY"]) | json_values,
            "stream": st.fixed_dictionaries({"stream_descriptor": json_values}) | json_values,
        }
    )
    | json_values,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(protocol_fields, min_size=1, max_size=30))
def test_odd_json_types_in_every_protocol_field_are_counted_or_a_clear_state_error(fuzzed):
    with HeapSandbox() as sandbox:
        run = run_connector("write", config_for(sandbox), [*fuzzed, state(0)])
    assert "Traceback" not in run.stdout + run.stderr
    if run.returncode != 0:
        (error,) = run.errors
        assert "STATE message on input line" in error["message"] and error["failure_type"] == "system_error"
        return
    summary = run.summary
    assert summary["records_read"] == (
        summary["records_delivered"] + summary["records_rejected"] + summary["records_unmappable"]
    )
