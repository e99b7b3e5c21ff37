"""Data Activation: Heap's objects published by `discover`, and streams mapped to them in the Airbyte UI
loaded by `write` as the platform sends them (source stream names, renamed fields, matching keys)."""

from __future__ import annotations

from airbyte_protocol_dataclasses.models import DestinationOperation, DestinationSyncMode

from integration_tests.heap_sandbox import HeapSandbox
from integration_tests.support import activation_stream, platform_state, run_connector


def record(stream: str, **data: str) -> dict:
    return {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": 1666325394622}}


def test_discover_publishes_heaps_objects():
    run = run_connector("discover", {"app_id": "11"})
    assert run.returncode == 0, run.stderr
    (message,) = run.of_type("DESTINATION_CATALOG")
    operations = [DestinationOperation(**op) for op in message["destination_catalog"]["operations"]]
    by_name = {(op.object_name, op.sync_mode): op for op in operations}
    upsert, insert = DestinationSyncMode.append_dedup.value, DestinationSyncMode.append.value
    assert set(by_name) == {
        ("event", insert),
        ("event_by_user_id", insert),
        ("user_properties", upsert),
        ("user_properties", insert),
        ("account_properties", upsert),
        ("account_properties", insert),
        ("identify", insert),
    }, "events and links are only inserted; properties are upserted or inserted; nothing is updated or deleted"
    assert by_name[("identify", insert)].json_schema["required"] == ["user_id", "identity"]
    assert by_name[("event", insert)].json_schema["required"] == ["identity", "event"]
    assert {"timestamp", "idempotency_key"} <= set(by_name[("event", insert)].json_schema["properties"])
    assert by_name[("user_properties", upsert)].matching_keys == [["identity"]]
    assert by_name[("account_properties", upsert)].matching_keys == [["account_id"]]
    assert by_name[("user_properties", insert)].matching_keys is None
    assert all(op.json_schema["additionalProperties"] is True for op in operations)


def test_a_sync_of_every_object_loads_each_stream_into_its_api_with_extra_fields_as_properties():
    streams = [
        activation_stream("logins", "event", ["identity", "event", "timestamp", "plan"]),
        activation_stream("sdk_clicks", "event_by_user_id", ["user_id", "event", "button"]),
        activation_stream("crm_users", "user_properties", ["identity", "plan"], "append_dedup", ["identity"]),
        activation_stream(
            "crm_accounts", "account_properties", ["account_id", "seats"], "append_dedup", ["account_id"]
        ),
        activation_stream("web_logins", "identify", ["user_id", "identity"]),
    ]
    messages = [
        record("logins", identity="jo@x.io", event="Logged In", timestamp="2024-01-05T10:00:00+00:00", plan="pro"),
        record("logins", identity="al@x.io", event="Logged In", timestamp="2024-01-06T10:00:00+00:00", plan="free"),
        platform_state(1, "logins"),
        record("sdk_clicks", user_id="8675309", event="Clicked", button="Buy"),
        platform_state(2, "sdk_clicks"),
        record("crm_users", identity="jo@x.io", plan="pro"),
        record("crm_users", identity="", plan="free"),
        platform_state(3, "crm_users"),
        record("crm_accounts", account_id="acme", seats="12"),
        platform_state(4, "crm_accounts"),
        record("web_logins", user_id="8675309", identity="jo@x.io"),
        platform_state(5, "web_logins"),
    ]
    with HeapSandbox() as sandbox:
        config = {"app_id": "11", "base_url": sandbox.url}
        run = run_connector("write", config, messages, catalog_json={"streams": streams})
        events, users, accounts = sandbox.items("events"), sandbox.items("users"), sandbox.items("accounts")
        links = sandbox.items("identify")
    assert run.returncode == 0, run.stderr
    for event in events:
        assert event.pop("idempotency_key")
    assert events == [
        {
            "identity": "jo@x.io",
            "event": "Logged In",
            "timestamp": "2024-01-05T10:00:00.000Z",
            "properties": {"plan": "pro"},
        },
        {
            "identity": "al@x.io",
            "event": "Logged In",
            "timestamp": "2024-01-06T10:00:00.000Z",
            "properties": {"plan": "free"},
        },
        {
            "user_id": "8675309",
            "event": "Clicked",
            "timestamp": "2022-10-21T04:09:54.622Z",
            "properties": {"button": "Buy"},
        },
    ]
    assert users == [{"identity": "jo@x.io", "properties": {"plan": "pro"}}]
    assert accounts == [{"account_id": "acme", "properties": {"seats": "12"}}]
    assert links == [{"user_id": "8675309", "identity": "jo@x.io"}]
    states = {state["id"]: state["destinationStats"] for state in run.states}
    assert states == {
        1: {"recordCount": 2.0, "rejectedRecordCount": 0.0},
        2: {"recordCount": 1.0, "rejectedRecordCount": 0.0},
        3: {"recordCount": 1.0, "rejectedRecordCount": 1.0},
        4: {"recordCount": 1.0, "rejectedRecordCount": 0.0},
        5: {"recordCount": 1.0, "rejectedRecordCount": 0.0},
    }


def test_a_misfit_activation_stream_fails_before_any_request():
    cases = [
        (activation_stream("x", "contacts", ["identity"]), "'contacts', which is not a Heap object"),
        (activation_stream("x", "event", ["identity", "plan"]), "without its required field 'event'"),
        (
            activation_stream("x", "user_properties", ["identity", "email"], "append_dedup", ["email"]),
            "matches user_properties on 'email', which is not one of its matching keys: identity",
        ),
    ]
    for stream, message in cases:
        with HeapSandbox() as sandbox:
            run = run_connector(
                "write", {"app_id": "11", "base_url": sandbox.url}, [], catalog_json={"streams": [stream]}
            )
            requests = sandbox.state.snapshot()["requests"]
        assert run.returncode != 0 and run.errors[0]["failure_type"] == "config_error"
        assert message in run.errors[0]["message"] and "Stream 'x'" in run.errors[0]["message"]
        assert requests == 0


def test_check_passes_with_a_config_that_maps_nothing_and_an_unmapped_stream_is_named():
    with HeapSandbox() as sandbox:
        config = {"app_id": "11", "base_url": sandbox.url}
        check = run_connector("check", config)
        plain = {
            "stream": {"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
            "sync_mode": "full_refresh",
            "destination_sync_mode": "append",
        }
        write = run_connector("write", config, [], catalog_json={"streams": [plain]})
    assert check.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    assert write.returncode != 0
    assert "Stream 'users' is in the connection but nothing loads it" in write.errors[0]["message"]


def test_a_sync_mode_an_object_does_not_take_is_a_config_error_before_any_request():
    cases = [
        (activation_stream("logins", "event", ["identity", "event"], "append_dedup", ["identity"]), "event"),
        (activation_stream("crm", "user_properties", ["identity"], "update", ["identity"]), "user_properties"),
        (activation_stream("links", "identify", ["user_id", "identity"], "soft_delete"), "identify"),
    ]
    for stream, object_name in cases:
        with HeapSandbox() as sandbox:
            run = run_connector(
                "write", {"app_id": "11", "base_url": sandbox.url}, [], catalog_json={"streams": [stream]}
            )
            requests = sandbox.state.snapshot()["requests"]
        assert run.returncode != 0 and run.errors[0]["failure_type"] == "config_error"
        message = run.errors[0]["message"]
        name = stream["stream"]["name"]
        assert message.startswith(f"Stream '{name}' is mapped to {object_name} as "), message
        assert "which Heap cannot do for it: choose " in message and requests == 0
    assert message.endswith("choose Insert (append) in the connection.")


def test_user_properties_mapped_as_insert_load_as_an_upsert_does():
    stream = activation_stream("crm_users", "user_properties", ["identity", "plan"], "append")
    with HeapSandbox() as sandbox:
        config = {"app_id": "11", "base_url": sandbox.url}
        run = run_connector(
            "write", config, [record("crm_users", identity="jo@x.io", plan="pro")], {"streams": [stream]}
        )
        users = sandbox.items("users")
    assert run.returncode == 0, run.errors
    assert users == [{"identity": "jo@x.io", "properties": {"plan": "pro"}}]
