"""Where Heap's reference is silent: the connector is right whichever answer Heap gives. Each emulator switch
is one answer Heap may give; every API is checked and loaded under each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from integration_tests.heap_sandbox import RFC_3339, Faults, HeapSandbox
from integration_tests.support import catalog, config_for, platform_state, run_connector

MAPPINGS = [
    {
        "stream": "events",
        "api": {"api_type": "track", "event_column": "event", "identity_column": "email", "timestamp_column": "at"},
    },
    {"stream": "users", "api": {"api_type": "add_user_properties", "identity_column": "email"}},
    {"stream": "accounts", "api": {"api_type": "add_account_properties", "account_id_column": "account"}},
    {
        "stream": "links",
        "api": {
            "api_type": "identify",
            "user_id_column": "sdk_id",
            "identity_column": "email",
            "timestamp_column": "at",
        },
    },
]
TIMES = [
    "1704110400",
    "1704110400000",
    "2024-01-01 12:00:00",
    "2024-01-01T12:00:00",
    "20240101T120000",
    "2024-W01-1T12:00",
    "2024-01-01T12:00:00.123456789+02:00",
    1704110400.5,
]
"""Times as sources write them, none in the form Heap's reference shows."""

SILENCES = {
    "heap's documented answers": Faults(),
    "empty bulk arrays refused": Faults(empty_bulk="refuse"),
    "errors in other words": Faults(error_words="other"),
    "200 with an empty body": Faults(ok_body=""),
    "200 OK as text": Faults(ok_body="OK"),
    "204 no content": Faults(ok_body="204"),
    "arrays refused on the property APIs": Faults(property_arrays="refuse"),
    "only RFC 3339 times": Faults(strict_times=True),
    "all of these at once": Faults(
        empty_bulk="refuse", error_words="other", ok_body="", property_arrays="refuse", strict_times=True
    ),
}


def message(stream, **data):
    return {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": 1704110400000}}


def messages():
    out = []
    for n, at in enumerate(TIMES):
        out.append(message("events", email=f"u{n}@x.io", event="Seen", at=at, tags=["a", "b"]))
        out.append(message("links", email=f"u{n}@x.io", sdk_id=1000 + n, at=at))
    out.append(message("users", email="jo@x.io", tags=["a", 1, True], _airbyte_raw_id="r1", user_id="7"))
    out.append(message("accounts", account="acme", regions=["eu", "us"]))
    return [*out, *(platform_state(n, name) for n, name in enumerate(["events", "links", "users", "accounts"]))]


@pytest.mark.parametrize("faults", SILENCES.values(), ids=SILENCES.keys())
def test_every_api_is_checked_and_loaded_whichever_answer_heap_gives(faults):
    with HeapSandbox(faults) as sandbox:
        config = config_for(sandbox, mappings=MAPPINGS)
        checked = run_connector("check", config)
        run = run_connector("write", config, messages(), catalog_json=catalog("events", "links", "users", "accounts"))
        events, links = sandbox.items("events"), sandbox.items("identify")
        users, accounts = sandbox.items("users"), sandbox.items("accounts")
    assert checked.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    assert run.returncode == 0, run.stderr
    assert all(s["destinationStats"]["rejectedRecordCount"] == 0 for s in run.states)
    assert len(events) == len(links) == len(TIMES)
    expected = ["2024-01-01T12:00:00.000Z"] * 6 + ["2024-01-01T10:00:00.123456Z", "2024-01-01T12:00:00.500Z"]
    assert [event["timestamp"] for event in events] == expected
    assert sorted(link["timestamp"] for link in links) == sorted(expected)
    assert events[0]["properties"]["tags"] == ["a", "b"], "track takes arrays, as Heap documents"
    assert users == [{"identity": "jo@x.io", "properties": {"email": "jo@x.io", "tags": "a||1||true"}}]
    assert accounts == [{"account_id": "acme", "properties": {"account": "acme", "regions": "eu||us"}}]


@pytest.mark.parametrize("faults", SILENCES.values(), ids=SILENCES.keys())
def test_an_unknown_app_id_fails_check_whichever_answer_heap_gives(faults):
    with HeapSandbox(faults, app_ids={"11"}) as sandbox:
        for config in (config_for(sandbox, mappings=MAPPINGS), {"app_id": "11", "base_url": sandbox.url}):
            good = run_connector("check", config)
            bad = run_connector("check", {**config, "app_id": "12"})
            assert good.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
            status = bad.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
            assert status["status"] == "FAILED"
            assert "Heap answers app_id '12' as it answers an app id no environment has" in status["message"]
        assert all(items == [] for items in sandbox.state.snapshot()["accepted"].values()), "check sends no data"


def test_check_with_only_an_app_id_probes_heap_and_fails_when_nothing_listens():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = run_connector("check", {"app_id": "11", "base_url": f"http://127.0.0.1:{port}"})
    status = run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "cannot reach" in status["message"]


def test_a_heap_that_refuses_everything_stops_the_sync_early_and_says_what_to_check():
    records = [message("events", email=f"u{n}@x.io", event="Seen", at="2024-01-01") for n in range(5000)]
    with HeapSandbox(Faults(refuse_all=True)) as sandbox:
        config = config_for(sandbox, mappings=MAPPINGS[:1])
        run = run_connector("write", config, [*records, platform_state(1, "events")], catalog_json=catalog("events"))
        requests = sandbox.state.snapshot()["requests"]
    assert run.returncode != 0 and run.states == []
    assert requests <= 300, "not one request a record"
    error = run.errors[0]
    assert error["failure_type"] == "config_error"
    assert "refused the first" in error["message"] and "HTTP 400" in error["message"] and "app_id" in error["message"]


def test_a_stream_whose_every_record_fails_one_rule_is_a_config_error_naming_the_column():
    api = {"api_type": "add_user_properties", "identity_column": "emial"}
    records = [message("users", email=f"u{n}@x.io") for n in range(500)]
    with HeapSandbox() as sandbox:
        run = run_connector("write", config_for(sandbox, api), [*records, platform_state(1, "users")])
    assert run.returncode != 0
    message_text = run.errors[0]["message"]
    assert "None of the 100 records of stream 'users'" in message_text and "column 'emial'" in message_text


def test_a_poison_record_among_good_ones_is_still_isolated():
    records = [message("users", email=f"u{n}@x.io", note="POISON" if n == 300 else "ok") for n in range(2000)]
    api = {"api_type": "add_user_properties", "identity_column": "email"}
    with HeapSandbox(Faults(poison="POISON")) as sandbox:
        run = run_connector("write", config_for(sandbox, api), [*records, platform_state(1, "users")])
        users = sandbox.items("users")
    assert run.returncode == 0, run.stderr
    assert len(users) == 1999 and run.states[0]["destinationStats"]["rejectedRecordCount"] == 1.0


@pytest.mark.parametrize(
    "identity", ["undefined", "NULL", " None ", "nil", "NaN", "anonymous", "[object Object]", "0", "-1", "   "]
)
def test_placeholder_identities_are_never_sent(identity):
    records = [
        message("events", email=identity, event="Seen", at="2024-01-01"),
        message("events", email="jo@x.io", event="Seen", at="2024-01-01"),
    ]
    with HeapSandbox() as sandbox:
        run = run_connector(
            "write",
            config_for(sandbox, mappings=MAPPINGS[:1]),
            [*records, platform_state(1, "events")],
            catalog_json=catalog("events"),
        )
        events = sandbox.items("events")
    assert run.returncode == 0, run.stderr
    assert [event["identity"] for event in events] == ["jo@x.io"]
    assert run.states[0]["destinationStats"] == {"recordCount": 1.0, "rejectedRecordCount": 1.0}


REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "heap_reference.json").read_text())
FIELDS = {"/api/track": "events", "/api/add_user_properties": "users", "/api/add_account_properties": "accounts"}


def form(value):
    """A value's form: its type, and for a time whether it is RFC 3339 with an offset."""
    if isinstance(value, dict):
        return {key: form(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(form(inner)) for inner in value})
    if isinstance(value, str) and RFC_3339.fullmatch(value):
        return "rfc 3339"
    return type(value).__name__


@pytest.mark.parametrize("path", sorted(REFERENCE.keys() - {"_source"}))
def test_heaps_reference_bodies_are_accepted_by_the_strict_emulator(path):
    with HeapSandbox(Faults(strict_times=True, property_arrays="refuse", empty_bulk="refuse")) as sandbox:
        for body in REFERENCE[path]:
            answer = requests.post(sandbox.url + path, json=body, timeout=10)
            assert answer.status_code == 200, (body, answer.text)


def test_what_the_connector_sends_has_the_forms_of_heaps_reference():
    shown = {}
    for path, bodies in REFERENCE.items():
        if path == "_source":
            continue
        for body in bodies:
            items = body.get(FIELDS.get(path, ""), [{k: v for k, v in body.items() if k != "app_id"}])
            for item in items:
                for key, value in item.items():
                    if key != "properties":
                        shown.setdefault(path, {})[key] = form(value)
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, mappings=MAPPINGS)
        run = run_connector("write", config, messages(), catalog_json=catalog("events", "links", "users", "accounts"))
        sent = {
            "/api/track": sandbox.items("events"),
            "/api/v1/identify": sandbox.items("identify"),
            "/api/add_user_properties": sandbox.items("users"),
            "/api/add_account_properties": sandbox.items("accounts"),
        }
    assert run.returncode == 0, run.stderr
    for path, items in sent.items():
        for item in items:
            for key, value in item.items():
                if key == "properties":
                    continue
                assert key in shown[path], f"{path} sends {key}, which Heap's reference does not show"
                assert form(value) == shown[path][key], (path, key, value)
            for value in item.get("properties", {}).values():
                allowed = ("str", "int", "float") if path != "/api/track" else ("str", "int", "float", "list")
                assert type(value).__name__ in allowed
