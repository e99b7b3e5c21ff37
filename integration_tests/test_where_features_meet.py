"""Where features meet: merged updates and refusals, exclusions and renames, mappings and keys, throttling and
pacing, quiet sources and stuck APIs, each through `main.py write` against the sandbox."""

from __future__ import annotations

import json
import time

from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import (
    TRACK,
    catalog,
    config_for,
    platform_state,
    record,
    run_connector,
    state,
    stream_messages,
)

USERS = {"api_type": "add_user_properties", "identity_column": "email"}


def user(seq, **data):
    message = record(seq, **data)
    message["record"]["data"] = {"email": "jo@example.com", **data}
    return message


def test_a_refused_merged_update_costs_only_the_bad_record_and_counts_in_its_own_span():
    messages = [
        user(0, plan="free"),
        user(1, note="POISON here"),
        user(2, tier="gold"),
        platform_state(1),
        user(3, seats="5"),
        platform_state(2),
    ]
    with HeapSandbox(Faults(poison="POISON")) as sandbox:
        run = run_connector("write", config_for(sandbox, USERS), messages)
        received = sandbox.items("users")
    assert run.returncode == 0, run.stderr
    assert [user["properties"] for user in received] == [
        {"email": "jo@example.com", "plan": "free"},
        {"email": "jo@example.com", "tier": "gold"},
        {"email": "jo@example.com", "seats": "5"},
    ]
    assert run.summary["records_rejected"] == 1 and run.summary["records_delivered"] == 3
    rejected = [line for line in run.logs if "was rejected by Heap" in line]
    assert len(rejected) == 1 and rejected[0].startswith("Record 2 of stream ")
    assert [s["destinationStats"] for s in run.states] == [
        {"recordCount": 2.0, "rejectedRecordCount": 1.0},
        {"recordCount": 1.0, "rejectedRecordCount": 0.0},
    ]


CARD = "4111-1111-1111-1111"


def test_exclusions_leave_out_what_would_be_sent_whatever_the_keys_hold():
    data = {
        "email": "jo@example.com",
        "card": {"number": CARD, "brand": "visa"},
        "billing": {"card.number": CARD, "city": "Oslo"},
        "meta.v2": CARD,
        "plan": "pro",
    }
    selections = {
        "card as Payment Card, *, -card.number, -billing.card.number, -meta.v2": {
            "Payment Card.brand": "visa",
            "email": "jo@example.com",
            "billing.city": "Oslo",
            "plan": "pro",
        },
        "card, *, -card.number, -billing.card.number, -meta.v2": {
            "card.brand": "visa",
            "email": "jo@example.com",
            "billing.city": "Oslo",
            "plan": "pro",
        },
        "card, -card_number": {"card.brand": "visa"},
    }
    for selection, expected in selections.items():
        with HeapSandbox() as sandbox:
            api = {**USERS, "property_columns": selection}
            run = run_connector("write", config_for(sandbox, api), [user(0, **data), state(0)])
            received = sandbox.items("users")
        assert run.returncode == 0, run.stderr
        assert [item["properties"] for item in received] == [expected], selection
        assert CARD not in json.dumps(received)


def test_a_misspelt_option_fails_check_and_write_before_any_request():
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, {**USERS, "property_column": "email"})
        check = run_connector("check", config)
        write = run_connector("write", config, stream_messages(3))
        requests = sandbox.state.snapshot()["requests"]
    status = check.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "unknown option 'property_column'; did you mean 'property_columns'?" in status["message"]
    assert write.returncode != 0 and write.errors[0]["failure_type"] == "config_error"
    assert "did you mean 'property_columns'?" in write.errors[0]["message"]
    assert requests == 0


def test_adding_an_event_mapping_leaves_the_first_ones_keys_as_they_were():
    first = [{"stream": "users", "api": TRACK}]
    visited = {key: value for key, value in TRACK.items() if key != "event_column"}
    both = [*first, {"stream": "users", "api": {**visited, "event_name": "Visited"}}]
    messages = stream_messages(10)
    with HeapSandbox() as sandbox:
        for mappings in (first, both, both):
            run = run_connector("write", config_for(sandbox, mappings=mappings), messages)
            assert run.returncode == 0, run.stderr
        events = sandbox.items("events")
        duplicates = sandbox.state.snapshot()["duplicates_ignored"]
    assert len(events) == 20, "ten 'Signed Up' and ten 'Visited', each once"
    assert duplicates == 30, "the second sync resent ten, the third twenty, each ignored by its key"


def test_a_quiet_source_gets_its_records_to_heap_and_its_state_back_without_more_input():
    passed_at = []

    def quiet_source():
        yield from (record(seq) for seq in range(3))
        yield state(2)
        time.sleep(20)

    with HeapSandbox() as sandbox:
        started = time.monotonic()
        run = run_connector(
            "write",
            config_for(sandbox),
            quiet_source(),
            on_message=lambda m: passed_at.append(time.monotonic() - started) if m["type"] == "STATE" else None,
        )
    assert run.returncode == 0, run.stderr
    assert len(passed_at) == 1 and passed_at[0] < 10, f"the STATE came back after {passed_at}s"


def test_one_stuck_api_does_not_hold_back_another_streams_states():
    mappings = [{"stream": "users", "api": USERS}, {"stream": "events", "api": TRACK}]
    messages = [record(0, stream="events"), state(0, stream="events")]
    for seq in range(300):
        messages += [record(seq), state(seq)]
    passed = []
    with HeapSandbox(Faults(fail_path="/api/track", fail_status=503)) as sandbox:
        config = config_for(sandbox, mappings=mappings, max_retry_seconds=15)
        run = run_connector(
            "write",
            config,
            messages,
            catalog_json=catalog("users", "events"),
            on_message=lambda m: (
                passed.append(m["state"]["stream"]["stream_descriptor"]["name"]) if m["type"] == "STATE" else None
            ),
        )
        users = sandbox.items("users")
    assert run.returncode != 0, "the track lane ran out of retries"
    assert len(users) == 300
    assert passed.count("users") == 300 and "events" not in passed


def test_a_retry_after_of_zero_still_backs_off():
    with HeapSandbox(Faults(throttle_rate=1.0, retry_after=0)) as sandbox:
        started = time.monotonic()
        run = run_connector("write", config_for(sandbox, max_retry_seconds=8), stream_messages(10))
        elapsed = time.monotonic() - started
        requests = sandbox.state.snapshot()["requests"]
    assert run.returncode != 0 and "8s retry budget" in run.errors[0]["message"]
    assert requests <= 12, f"{requests} requests in {elapsed:.1f}s: Retry-After 0 must not mean no backoff"


def test_no_request_holds_more_items_than_a_small_ceiling_allows_in_a_minute():
    with HeapSandbox(Faults(rate_limit=500, rate_window=60.0)) as sandbox:
        config = config_for(sandbox, max_events_per_minute=500)
        run = run_connector("write", config, stream_messages(40))
        snapshot = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert snapshot["statuses"].get(429, 0) == 0
    assert len(snapshot["accepted"]["events"]) == 40
    assert max(size for _, size in snapshot["accepted_requests"]) <= 15


def test_a_line_whose_type_is_not_text_is_unreadable_and_the_state_before_it_passes():
    with HeapSandbox() as sandbox:
        messages = [record(0), state(0), {"type": ["RECORD"]}, {"type": {"a": 1}}, record(1), state(1)]
        run = run_connector("write", config_for(sandbox), messages)
    assert run.returncode == 0, run.stderr
    assert [s["stream"]["stream_state"]["seq"] for s in run.states] == [0, 1]
    assert run.summary["lines_unreadable"] == 2


def test_a_state_passes_byte_for_byte_and_a_stream_name_with_a_lone_surrogate_is_logged_safely():
    raw = (
        b'{"type":"STATE","state":{"type":"STREAM","id":7,"n":1e400,"d":0.1000000000000000000000000001,'
        b'"stream":{"stream_descriptor":{"name":"users"},"stream_state":{"seq":0}}}}'
    )
    odd = b'{"type":"RECORD","record":{"stream":"\\ud800x","data":{"a":1},"emitted_at":1}}'
    with HeapSandbox() as sandbox:
        run = run_connector("write", config_for(sandbox), [record(0), odd, raw])
    assert run.returncode == 0, run.stderr
    (line,) = [line for line in run.stdout.splitlines() if '"STATE"' in line]
    stats = b',"destinationStats":{"recordCount":1.0,"rejectedRecordCount":0.0}}}'
    assert line.encode() == raw[:-2] + stats
    assert any("\\ud800x" in log for log in run.logs)


def test_https_to_a_server_speaking_plain_http_is_a_config_error_at_once():
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, base_url=sandbox.url.replace("http://", "https://"))
        write = run_connector("write", config, stream_messages(3))
        check = run_connector("check", config)
    origin = sandbox.url.replace("http://", "https://")
    assert write.returncode != 0 and write.errors[0]["failure_type"] == "config_error"
    assert f"The TLS handshake with {origin} failed twice" in write.errors[0]["message"]
    assert write.seconds < 20, "not retried for the whole budget"
    status = check.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and f"The TLS handshake with {origin}" in status["message"]


def test_a_host_that_does_not_resolve_is_the_config_error_check_gives_within_seconds():
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, base_url="https://heap.invalid")  # .invalid never resolves (RFC 2606)
    write = run_connector("write", config, stream_messages(3))
    check = run_connector("check", config)
    assert write.returncode != 0 and write.errors[0]["failure_type"] == "config_error"
    message = write.errors[0]["message"]
    assert message.startswith("cannot reach https://heap.invalid: its host name does not resolve")
    assert write.seconds < 20, "not retried for the whole budget"
    status = check.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and message in status["message"]
    assert write.states == []
