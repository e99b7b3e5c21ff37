"""Hostile networks, configs and sources, through `main.py` as a subprocess against the sandbox: no redirect
is followed, values arrive exactly, no record crashes a sync, nothing leaks or hangs."""

from __future__ import annotations

import json

import pytest

from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import TRACK, catalog, config_for, record, run_connector, state, stream_messages

MAX_LINE = 4_000


def assert_clean(run, *secrets):
    """No secret or record value in any output, no traceback, and no line longer than MAX_LINE."""
    output = run.stdout + run.stderr
    for secret in secrets:
        assert secret not in output, f"{secret!r} leaked"
    assert "Traceback" not in output
    assert max(map(len, output.splitlines()), default=0) <= MAX_LINE


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_naming_where_it_pointed_and_nothing_reaches_the_target(status):
    with HeapSandbox() as target, HeapSandbox(Faults(redirect_status=status, redirect_to=target.url)) as heap:
        run = run_connector("write", config_for(heap), stream_messages(50))
        check = run_connector("check", config_for(heap))
        assert target.state.snapshot()["requests"] == 0
    assert run.returncode != 0 and run.states == []
    error = run.errors[0]
    assert error["failure_type"] == "config_error"
    assert f'answered HTTP {status} ("redirected to {target.url}")' in error["message"]
    assert f"redirected to {target.url}" in check.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["message"]
    assert_clean(run)


@pytest.mark.parametrize(
    ("base_url", "refusal"),
    [
        ("https://admin:hunter2secret@heap.test", "must not hold a user name or password"),
        ("http://127.0.0.1:80@hunter2secret.example", "must not hold a user name or password"),
        ("https://heap.test/hunter2secret", "must be only scheme, host and port"),
        ("https://heap.test?key=hunter2secret", "must not hold a query"),
        ("https://heap.test#hunter2secret", "must not hold a query"),
        ("https://heap.test:70000", "is not a valid URL"),
        ("https://heap.test:0", "must have a port from 1 to 65535"),
        ("http://heap.test", "must be https"),
        ("https://heap.test\\@hunter2secret.example", "must be only scheme, host and port"),
        ("https://hunter2secret .example", "is not a valid URL"),
        ("ftp://heap.test", "must be https"),
    ],
)
def test_base_urls_the_client_would_read_differently_are_refused_without_quoting_them(base_url, refusal):
    config = {"app_id": "11", "base_url": base_url, "api": TRACK}
    check = run_connector("check", config)
    status = check.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and refusal in status["message"]
    run = run_connector("write", config, stream_messages(3))
    assert run.returncode != 0 and run.errors[0]["failure_type"] == "config_error"
    assert refusal in run.errors[0]["message"]
    assert_clean(check, "hunter2secret")
    assert_clean(run, "hunter2secret")


def test_a_config_that_is_not_an_object_is_a_config_error_without_a_traceback():
    run = run_connector("write", ["not", "an", "object"], stream_messages(1))
    assert run.returncode != 0
    assert run.errors[0]["failure_type"] == "config_error"
    assert run.errors[0]["message"] == "Invalid configuration: the config must be a JSON object, not an array"
    assert run.errors[0].get("stack_trace") is None
    assert_clean(run)


def test_a_trickling_answer_is_cut_off_at_the_deadline_and_retried_without_duplicates():
    faults = Faults(trickle_rate=0.3, trickle_interval=0.5, seed=4)
    with HeapSandbox(faults) as sandbox:
        run = run_connector("write", config_for(sandbox, request_timeout_seconds=2), stream_messages(5_000))
        snapshot = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert sorted(e["properties"]["seq"] for e in snapshot["accepted"]["events"]) == list(range(5_000))
    assert snapshot["duplicates_ignored"] > 0 and run.summary["retries"] > 0
    assert run.seconds < 60


def test_check_does_not_wait_on_a_trickling_answer():
    with HeapSandbox(Faults(trickle_rate=1.0, trickle_interval=1.0)) as sandbox:
        run = run_connector("check", config_for(sandbox, request_timeout_seconds=2), timeout=60)
    status = run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "no complete answer within 2s" in status["message"]  # not killed


def test_a_fatal_answer_ends_the_process_at_once_while_other_requests_stall():
    faults = Faults(fail_rate=1.0, fail_status=404, stall_first=3, stall_seconds=120)
    with HeapSandbox(faults) as sandbox:
        run = run_connector("write", config_for(sandbox, request_timeout_seconds=300), stream_messages(8_000))
        stalled = sandbox.state.snapshot()["requests"]
    assert run.returncode != 0 and "HTTP 404" in run.errors[0]["message"]
    assert stalled >= 4, "no request was stalled when the fatal answer came: the test proved nothing"
    assert run.seconds < 15, f"took {run.seconds:.1f}s to exit"


def raw_line(stream_data, emitted_at=1666325394622):
    """A RECORD line written with Python's json, which keeps integers of any size exact."""
    return {"type": "RECORD", "record": {"stream": "users", "data": stream_data, "emitted_at": emitted_at}}


def test_integers_beyond_64_bits_reach_heap_exactly_and_keep_their_rows_apart(sandbox):
    ids = [2**64 + 1, 2**64 + 2, -(2**65)]
    messages = [raw_line({"id": n, "email": n, "event": "e", "n": n}) for n in ids] + [state(2)]
    run = run_connector("write", config_for(sandbox), messages, catalog_json=catalog(primary_key=[["id"]]))
    assert run.returncode == 0, run.stderr
    events = sandbox.items("events")
    assert [e["identity"] for e in events] == [str(n) for n in ids]
    assert [e["properties"]["n"] for e in events] == [str(n) for n in ids]
    assert len({e["idempotency_key"] for e in events}) == 3
    assert run.summary["records_delivered"] == 3


def test_nan_or_infinity_is_never_an_identity(sandbox):
    lines = [
        b'{"type":"RECORD","record":{"stream":"users","data":{"email":%s,"event":"e"},"emitted_at":1}}' % v
        for v in (b"NaN", b"Infinity", b"-Infinity")
    ]
    run = run_connector("write", config_for(sandbox), lines)
    assert run.returncode == 0, run.stderr
    assert sandbox.items("events") == []
    assert run.summary["unmappable_by_reason"] == {"identity is not a string or number": 3}


def test_streams_of_one_name_in_two_namespaces_keep_each_others_events(sandbox):
    for namespace in ("tenant_a", "tenant_b"):
        configured = catalog(primary_key=[["seq"]])
        configured["streams"][0]["stream"]["namespace"] = namespace
        messages = stream_messages(100)
        for message in messages:
            if message["type"] == "RECORD":
                message["record"]["namespace"] = namespace
            else:
                message["state"]["stream"]["stream_descriptor"]["namespace"] = namespace
        run = run_connector("write", config_for(sandbox), messages, catalog_json=configured)
        assert run.returncode == 0, run.stderr
    assert len(sandbox.items("events")) == 200
    assert sandbox.state.snapshot()["duplicates_ignored"] == 0


def test_a_configured_idempotency_key_column_cannot_collide_across_streams(sandbox):
    api = {**TRACK, "idempotency_key_column": "seq"}
    for stream in ("signups", "orders"):
        messages = [record(n, stream=stream) for n in range(50)] + [state(49, stream=stream)]
        run = run_connector("write", config_for(sandbox, api), messages, catalog_json=catalog(stream))
        assert run.returncode == 0, run.stderr
    assert len(sandbox.items("events")) == 100


POISON_LINES = [
    b'{"type":"RECORD","record":{"stream":"users","data":{"email":"\\ud800x","event":"e"},"emitted_at":1}}',
    b'{"type":"RECORD","record":{"stream":"users","data":{"email":"a","event":"e","\\udfff":"v"},"emitted_at":1}}',
    b'{"type":"RECORD","record":{"stream":"users","data":{"email":"a","event":"e","p":"\\udbff"},"emitted_at":1}}',
    *(
        b'{"type":"RECORD","record":{"stream":"users","data":{"email":"a","event":"e","deep":'
        + b'{"a":' * depth
        + b"1"
        + b"}" * depth
        + b'},"emitted_at":1}}'
        for depth in (300, 1000)
    ),
    b'{"type":"RECORD","record":{"stream":"users","data":' + b"[" * 5000 + b"]" * 5000 + b',"emitted_at":1}}',
    b'{"type":"RECORD","record":{"stream":"users","data":{"email":"a","event":"e"}}}',
    b'{"type":"RECORD","record":{"stream":"users","data":{"email":"a","event":"e"},"emitted_at":"yesterday"}}',
    b'{"type":"RECORD","record":{"stream":"users","data":{"email":"a","event":"e"},"emitted_at":1e300}}',
    b'{"type":"RECORD","record":{"stream":"users","data":{"email":"a","event":"e"},"emitted_at":99999999999999999999999}}',
    b'{"type":"RECORD","record":{"stream":"users","emitted_at":1}}',
    b'{"type":"RECORD","record":{"data":{"email":"a","event":"e"},"emitted_at":1}}',
    b'{"type":"RECORD","record":"users"}',
    b'{"type":"RECORD"}',
    b'{"type":"WHATEVER","record":{}}',
    b"[1, 2, 3]",
    b'"just a string"',
    b"\xff\xfe not utf-8",
    b"{not json",
]


@pytest.mark.parametrize("api", [TRACK, {"api_type": "add_user_properties", "identity_column": "email"}])
def test_no_single_record_crashes_the_sync(sandbox, api):
    messages = [record(0), *POISON_LINES, record(1), state(1)]
    run = run_connector("write", config_for(sandbox, api), messages)
    assert run.returncode == 0, run.stdout[-2000:]
    assert_clean(run, "\\ud800x")
    summary = run.summary
    fed = len(POISON_LINES) + 2
    assert summary["records_delivered"] + summary["records_unmappable"] + summary["lines_unreadable"] == fed
    assert summary["records_read"] == summary["records_delivered"] + summary["records_unmappable"]
    assert summary["records_delivered"] == (3 if api is TRACK else 5)
    assert len(run.states) == 1


def test_one_malformed_record_fails_the_sync_under_fail_with_its_position(sandbox):
    messages = [record(0), POISON_LINES[0], record(1), state(1)]
    run = run_connector("write", config_for(sandbox, on_rejected_record="fail"), messages)
    assert run.returncode != 0
    assert run.errors[0]["message"] == (
        "Record 2 of stream 'users' to track cannot be sent (on_rejected_record is 'fail'): text holding a lone "
        "UTF-16 surrogate"
    )
    assert_clean(run, "\\ud800x")


PERSONAL = ["jane.doe@private.example", "Qx", "918273645", "Zoë Ørsted"]


def test_heaps_echo_of_a_request_never_reaches_a_line_and_lines_stay_short():
    def leaky(seq):
        if seq == 0:
            return record(seq)  # one record Heap accepts: the rest are one record's refusals, isolated one by one
        data = {"email": f"{seq}{PERSONAL[0]}", "event": "e", "who": PERSONAL[1], "pin": 918273645, "name": PERSONAL[3]}
        data[f"POISON_{seq}_{PERSONAL[0]}"] = "x"
        data["by_email"] = {f"{seq}.{PERSONAL[0]}": "y"}
        return record(seq, **data)

    with HeapSandbox(Faults(poison="POISON", echo_body=True, fail_rate=0.03, seed=9)) as sandbox:
        config = config_for(sandbox, progress_interval_seconds=1)
        run = run_connector("write", config, stream_messages(400, make=leaky))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.summary["records_rejected"] == 399 and run.summary["retries"] > 0
    assert len(run.summary["rejected_by_reason"]) <= 3
    assert_clean(run, *PERSONAL, "private.example", "\\u006a\\u0061\\u006e\\u0065", "POISON_")
    assert len(json.dumps(run.summary)) < 2_000


def test_an_unmappable_record_under_fail_is_named_with_its_reason(sandbox):
    run = run_connector("write", config_for(sandbox, on_rejected_record="fail"), [record(0, email=None), state(0)])
    assert run.returncode != 0
    assert run.errors[0]["message"] == (
        "Record 1 of stream 'users' to track cannot be sent (on_rejected_record is 'fail'): missing identity "
        "(column 'email')"
    )
