"""spec, check and write through `main.py` as a subprocess, against the local Heap sandbox."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from integration_tests.heap_sandbox import HeapSandbox
from integration_tests.support import (
    MAIN,
    TRACK,
    StateCoverage,
    catalog,
    config_for,
    record,
    run_connector,
    state,
    stream_messages,
)
from unit_tests.seeds import SEEDS


def test_spec_offers_every_api_and_none_for_mappings():
    run = run_connector("spec")
    assert run.returncode == 0
    spec = run.of_type("SPEC")[0]["spec"]
    options = spec["connectionSpecification"]["properties"]["api"]["oneOf"]
    assert [o["properties"]["api_type"]["const"] for o in options] == [
        "track",
        "add_user_properties",
        "add_account_properties",
        "identify",
        "user_deletion",
        "none",
    ]
    assert spec["supported_destination_sync_modes"] == ["overwrite", "append", "append_dedup"]


def check(config):
    run = run_connector("check", config)
    assert run.returncode == 0, run.stderr
    return run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]


def test_check_succeeds_with_an_empty_request_that_creates_nothing(sandbox):
    status = check(config_for(sandbox))
    assert status["status"] == "SUCCEEDED" and "write --dry-run" in status["message"]
    snapshot = sandbox.state.snapshot()
    assert snapshot["requests"] == 2, "one empty request for the app id, one for an app id no environment has"
    assert all(items == [] for items in snapshot["accepted"].values())
    assert "Heap knows app_id '11'" in status["message"]


def test_check_names_a_bad_app_id(sandbox):
    status = check({**config_for(sandbox), "app_id": "not-my-env"})
    assert status["status"] == "FAILED"
    assert status["message"].startswith(
        "Heap answers app_id 'not-my-env' as it answers an app id no environment has (HTTP 400"
    ) and status["message"].endswith("check the environment id under Account > Manage > Projects")


def test_check_names_an_unreachable_host():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status = check({"app_id": "11", "base_url": f"http://127.0.0.1:{port}", "api": TRACK})
    assert status["status"] == "FAILED"
    assert status["message"].startswith(f"cannot reach http://127.0.0.1:{port}/api/track: connection failed")


def test_check_validates_the_config_before_any_request(sandbox):
    status = check({**config_for(sandbox), "base_url": "http://example.com"})
    assert status["status"] == "FAILED" and "must be https" in status["message"]
    assert sandbox.state.snapshot()["requests"] == 0


@pytest.mark.parametrize(("api", "source", "expected"), SEEDS, ids=["track", "user", "account"])
def test_mission_examples_reach_heap_exactly(sandbox, api, source, expected):
    messages = [{"type": "RECORD", "record": {"stream": "users", "data": source, "emitted_at": 1}}, state(0)]
    run = run_connector("write", config_for(sandbox, api), messages)
    assert run.returncode == 0, run.stderr
    field = {"track": "events", "add_user_properties": "users", "add_account_properties": "accounts"}[api["api_type"]]
    received = sandbox.items(field)
    assert len(received) == 1
    item = dict(received[0])
    if field == "events":
        assert isinstance(item.pop("idempotency_key"), str)
    assert item == expected
    assert len(run.states) == 1


def test_ten_thousand_records_in_ten_requests_and_the_last_state_after_the_last_ack(sandbox):
    coverage = StateCoverage(sandbox)
    run = run_connector("write", config_for(sandbox), stream_messages(10_000), on_message=coverage.on_message)
    assert run.returncode == 0, run.stderr
    snapshot = sandbox.state.snapshot()
    assert snapshot["requests"] <= 10
    assert sorted(e["properties"]["seq"] for e in snapshot["accepted"]["events"]) == list(range(10_000))
    assert coverage.covered[-1] == 9_999
    assert coverage.early == []
    assert [s["destinationStats"]["recordCount"] for s in run.states] == [1000.0] * 10
    assert run.summary["records_delivered"] == 10_000


def test_records_that_cannot_be_mapped_are_counted_and_named_without_their_data(sandbox):
    messages = [
        record(0),
        record(1, email=None),
        record(2, email="x" * 300),
        record(3, event=None),
        record(4, stream="other"),
        state(4),
    ]
    run = run_connector("write", config_for(sandbox), messages)
    assert run.returncode == 0, run.stderr
    assert len(sandbox.items("events")) == 1
    assert run.summary["unmappable_by_reason"] == {
        "missing identity": 1,
        "identity longer than 255 characters": 1,
        "missing event": 1,
        "record of a stream not in the catalog": 1,
    }
    assert "Record 2 of stream 'users' to track cannot be sent to Heap: missing identity (column 'email')." in run.logs
    assert "Record 5 of stream 'other' cannot be sent to Heap: record of a stream not in the catalog." in run.logs
    assert "x" * 300 not in run.stdout
    assert len(run.states) == 1


def test_a_catalog_with_two_streams_is_refused_before_any_request(sandbox):
    run = run_connector("write", config_for(sandbox), [record(0)], catalog_json=catalog("users", "orders"))
    assert run.returncode != 0
    assert "The catalog holds 2 streams ('users', 'orders')" in run.errors[0]["message"]
    assert run.errors[0]["failure_type"] == "config_error"
    assert sandbox.state.snapshot()["requests"] == 0


def test_overwrite_loads_like_append_and_says_so(sandbox):
    configured = catalog()
    configured["streams"][0]["destination_sync_mode"] = "overwrite"
    run = run_connector("write", config_for(sandbox), stream_messages(3), catalog_json=configured)
    assert run.returncode == 0
    assert len(sandbox.items("events")) == 3
    assert any("Heap is append-only" in line for line in run.logs)


def test_user_properties_updates_to_one_identity_are_merged_in_order():
    api = {"api_type": "add_user_properties", "identity_column": "email", "property_columns": "plan,seq"}
    messages = [record(n, email=f"u{n % 3}", plan=f"p{n}") for n in range(9)] + [state(8)]
    with HeapSandbox() as sandbox:
        run = run_connector("write", config_for(sandbox, api), messages)
        assert run.returncode == 0, run.stderr
        users = sandbox.items("users")
    assert sorted((u["identity"], u["properties"]["plan"]) for u in users) == [("u0", "p6"), ("u1", "p7"), ("u2", "p8")]
    assert run.summary["records_delivered"] == 9


def test_texts_longer_than_heap_takes_are_cut_in_every_record_read_in_line():
    api = {"api_type": "add_user_properties", "identity_column": "email"}
    messages = [record(n, email=f"u{n}", bio={"text": "é" * (2000 if n % 2 else 10)}) for n in range(6)] + [state(5)]
    with HeapSandbox() as sandbox:
        run = run_connector("write", config_for(sandbox, api), messages)
        assert run.returncode == 0, run.stderr
        users = sandbox.items("users")
    texts = {u["identity"]: u["properties"]["bio.text"] for u in users}
    assert texts == {f"u{n}": "é" * (1023 if n % 2 else 10) for n in range(6)}


def test_the_command_line_says_what_it_wants_without_a_stack_trace(tmp_path):
    bare = subprocess.run([sys.executable, MAIN], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "usage: destination-heap-analytics" in bare.stderr
    assert "Traceback" not in bare.stdout + bare.stderr
    helped = subprocess.run([sys.executable, MAIN, "write", "--help"], capture_output=True, text=True, timeout=60)
    assert "--dry-run" in helped.stdout
    missing = str(tmp_path / "nowhere.json")
    checked = subprocess.run([sys.executable, MAIN, "check", "--config", missing], capture_output=True, timeout=60)
    status = json.loads(checked.stdout.splitlines()[-1])["connectionStatus"]
    assert status["status"] == "FAILED" and missing in status["message"]


def test_the_sandbox_writes_sample_configs_pointing_at_itself_and_the_bundled_ones_reach_no_port(tmp_path):
    sandbox = subprocess.Popen(
        [sys.executable, "integration_tests/heap_sandbox.py", "--configs", str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=Path(MAIN).parent,
    )
    try:
        url = sandbox.stdout.readline().decode().split()[-1]
        assert sandbox.stdout.readline().decode().startswith("Sample configs pointing at it")
        written = sorted(path.name for path in tmp_path.iterdir())
        assert written == sorted(path.name for path in (Path(MAIN).parent / "sample_files").glob("config_*.json"))
        config = json.loads((tmp_path / "config_track.json").read_text())
        assert config["base_url"] == url
        checked = run_connector("check", config)
    finally:
        sandbox.kill()
    assert checked.messages[-1]["connectionStatus"]["status"] == "SUCCEEDED"
    bundled = json.loads((Path(MAIN).parent / "sample_files" / "config_track.json").read_text())
    refused = run_connector("check", bundled)
    assert "base_url: is not a valid URL" in refused.messages[-1]["connectionStatus"]["message"]
