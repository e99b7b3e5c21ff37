"""Delivery guarantees under faults: every record accepted exactly once or reported, STATE never early."""

from __future__ import annotations

import re
import time

from destination_heap_analytics.config import TrackApi
from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import StateCoverage, config_for, record, run_connector, stream_messages


def test_twenty_thousand_records_through_faults_arrive_exactly_once():
    faults = Faults(fail_rate=0.10, throttle_rate=0.10, retry_after=0.2, drop_rate=0.05, seed=7)
    with HeapSandbox(faults) as sandbox:
        coverage = StateCoverage(sandbox)
        run = run_connector("write", config_for(sandbox), stream_messages(20_000), on_message=coverage.on_message)
        snapshot = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    events = snapshot["accepted"]["events"]
    assert sorted(e["properties"]["seq"] for e in events) == list(range(20_000))
    assert len({e["idempotency_key"] for e in events}) == 20_000
    assert snapshot["statuses"].get(500, 0) > 0 and snapshot["statuses"].get(429, 0) > 0
    assert snapshot["duplicates_ignored"] > 0, "no acknowledgement was lost: the test proved nothing"
    assert coverage.covered == list(range(999, 20_000, 1000))
    assert coverage.early == []
    summary = run.summary
    assert summary["records_delivered"] == 20_000 and summary["retries"] > 0
    assert summary["records_read"] == summary["records_delivered"] + summary["records_rejected"]


def test_answers_slower_than_the_timeout_are_retried_without_duplicates():
    faults = Faults(stall_rate=0.4, stall_seconds=2.5, seed=3)
    with HeapSandbox(faults) as sandbox:
        run = run_connector("write", config_for(sandbox, request_timeout_seconds=1), stream_messages(5_000))
        time.sleep(faults.stall_seconds)
        snapshot = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert sorted(e["properties"]["seq"] for e in snapshot["accepted"]["events"]) == list(range(5_000))
    assert run.summary["retries"] > 0
    assert snapshot["duplicates_ignored"] > 0


POISON = {1234, 2345, 4999}


def poisoned(seq):
    return record(seq, note="POISON" if seq in POISON else "fine")


def test_poison_items_are_isolated_and_reported_while_the_rest_arrive():
    with HeapSandbox(Faults(poison="POISON")) as sandbox:
        coverage = StateCoverage(sandbox, rejected=POISON)
        messages = stream_messages(5_000, make=poisoned)
        run = run_connector("write", config_for(sandbox), messages, on_message=coverage.on_message)
        events = sandbox.items("events")
    assert run.returncode == 0, run.stderr
    assert sorted(e["properties"]["seq"] for e in events) == sorted(set(range(5_000)) - POISON)
    assert run.summary["records_rejected"] == 3
    assert run.summary["records_delivered"] == 4_997
    reported = sorted(line for line in run.logs if "was rejected by Heap" in line)
    assert [int(line.split()[1]) for line in reported] == sorted(seq + 1 for seq in POISON)
    assert all(line.startswith("Record ") and " of stream 'users' to track was rejected" in line for line in reported)
    assert all("property value refused" in line for line in reported)
    assert coverage.early == [] and len(coverage.covered) == 5


def test_poison_items_fail_the_sync_at_the_first_rejection_when_asked():
    def many_poisoned(seq):
        return record(seq, note="POISON" if 1_000 <= seq < 3_000 else "fine")

    with HeapSandbox(Faults(poison="POISON")) as sandbox:
        run = run_connector(
            "write", config_for(sandbox, on_rejected_record="fail"), stream_messages(5_000, make=many_poisoned)
        )
        requests = sandbox.state.snapshot()["requests"]
    assert run.returncode != 0
    message = run.errors[0]["message"]
    assert re.match(r"Heap rejected record (\d+) of stream 'users' \(on_rejected_record is 'fail'\): HTTP 400", message)
    assert 1_000 <= int(message.split()[3]) - 1 < 3_000
    assert all(state["stream"]["stream_state"]["seq"] < 1_000 for state in run.states)
    assert requests <= TrackApi.workers + 11, f"{requests} requests: others went on sending after the first refusal"


def test_an_invalid_app_id_fails_within_seconds_as_a_config_error(sandbox):
    run = run_connector("write", {**config_for(sandbox), "app_id": "wrong"}, stream_messages(5_000))
    assert run.seconds < 10
    assert run.returncode != 0
    assert run.errors[0]["failure_type"] == "config_error"
    assert run.errors[0]["message"].startswith("Heap rejected app_id 'wrong'")
    assert run.states == []


def test_an_exhausted_retry_budget_fails_without_a_state_for_undelivered_records():
    with HeapSandbox(Faults(fail_rate=1.0)) as sandbox:
        run = run_connector("write", config_for(sandbox, max_retry_seconds=2), stream_messages(2_500))
    assert run.returncode != 0
    error = run.errors[0]
    assert error["failure_type"] == "transient_error"
    assert "/api/track within the 2s retry budget" in error["message"] and "HTTP 500" in error["message"]
    assert run.states == []


def test_property_updates_keep_input_order_per_identity_through_faults():
    api = {"api_type": "add_user_properties", "identity_column": "email", "property_columns": "seq"}
    faults = Faults(fail_rate=0.15, drop_rate=0.1, seed=11)
    messages = stream_messages(6_000, state_every=500, make=lambda seq: record(seq, email=f"u{seq % 1500}"))
    with HeapSandbox(faults) as sandbox:
        run = run_connector("write", config_for(sandbox, api), messages)
        users = sandbox.items("users")
    assert run.returncode == 0, run.stderr
    last_write = {}
    for user in users:
        last_write[user["identity"]] = user["properties"]["seq"]
    assert last_write == {f"u{k}": 4500 + k for k in range(1500)}
    writes: dict[str, list[int]] = {}
    for user in users:
        writes.setdefault(user["identity"], []).append(user["properties"]["seq"])
    assert all(sequence == sorted(sequence) for sequence in writes.values()), "an older update overwrote a newer one"
