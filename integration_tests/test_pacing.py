"""Pacing through `main.py`: an even flow under the limit however the sandbox counts it, and a retry
budget that counts every second a request waits once Heap has refused it."""

from __future__ import annotations

from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import config_for, record, run_connector, stream_messages


def test_a_limit_counted_over_five_second_windows_is_not_overrun():
    """60,000 items a minute counted over 5-second sliding windows, the connector told 60,000: a minute's
    budget spent at once would be throttled; an even flow is not."""
    faults = Faults(rate_limit=5_000, rate_window=5.0)
    with HeapSandbox(faults) as sandbox:
        run = run_connector(
            "write", config_for(sandbox, max_events_per_minute=60_000), stream_messages(8_000, state_every=500)
        )
        snapshot = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert snapshot["accepted_count"] == 8_000
    assert snapshot["statuses"].get(429, 0) == 0
    times = [at for at, _ in snapshot["accepted_requests"]]
    assert times[-1] - times[0] >= 6.0, "8,000 items at 1,000 a second take at least 7 requests' spacing"


def test_user_properties_have_no_per_app_ceiling_by_default():
    """20,000 distinct users go at once, not at 15,000 a minute, and unthrottled by a sandbox counting Heap's
    30 requests per 30 s per identity (the per-identity pacing itself is tested in unit_tests/test_pacing.py)."""
    api = {"api_type": "add_user_properties", "identity_column": "email", "property_columns": "seq"}
    messages = stream_messages(20_000, state_every=1_000, make=lambda seq: record(seq, email=f"user{seq}"))
    with HeapSandbox(Faults(identity_limit=30, identity_window=30.0)) as sandbox:
        config = {**config_for(sandbox, api)}
        del config["max_events_per_minute"]
        run = run_connector("write", config, messages)
        snapshot = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert snapshot["accepted_count"] == 20_000
    assert snapshot["statuses"].get(429, 0) == 0
    assert run.seconds < 30, "15,000 a minute would take 80 s"


def test_every_request_throttled_fails_within_twice_the_budget_without_state():
    with HeapSandbox(Faults(throttle_rate=1.0, retry_after=1.0)) as sandbox:
        config = config_for(sandbox, max_retry_seconds=5)
        del config["max_events_per_minute"]
        run = run_connector("write", config, stream_messages(5_000, state_every=100))
    assert run.returncode != 0
    assert run.errors[0]["failure_type"] == "transient_error"
    assert "within the 5s retry budget" in run.errors[0]["message"]
    assert run.states == []
    assert run.seconds < 10, "twice the budget"
