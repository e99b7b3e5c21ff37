"""Data Activation's table of objects: what a stream mapped to one is loaded with."""

import pytest
from airbyte_cdk.models import ConfiguredAirbyteStreamSerializer
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_heap_analytics.activation import api_of
from destination_heap_analytics.config import HeapConfig
from destination_heap_analytics.mapping import IdempotencyKey, mapper_for

CONFIG = HeapConfig.parse({"app_id": "11"})


def mapped(object_name: str, schema: dict) -> object:
    return ConfiguredAirbyteStreamSerializer.load(
        {
            "stream": {"name": "logins", "json_schema": schema, "supported_sync_modes": ["full_refresh"]},
            "sync_mode": "full_refresh",
            "destination_sync_mode": "append",
            "destination_object_name": object_name,
        }
    )


def test_a_schemaless_event_stream_keeps_its_mapped_timestamp_and_idempotency_key():
    api = api_of(mapped("event", {"type": "object", "additionalProperties": True}), "logins", CONFIG)
    assert (api.timestamp_column, api.idempotency_key_column) == ("timestamp", "idempotency_key")
    record = {"identity": "jo@x.io", "event": "Logged In", "timestamp": "2024-01-05T10:00:00Z", "idempotency_key": "k1"}
    item = mapper_for(api, IdempotencyKey("logins", column=api.idempotency_key_column)).map(record, 0, 1)
    assert item.body["timestamp"] == "2024-01-05T10:00:00.000Z" and item.body["properties"] == {}
    again = mapper_for(api, IdempotencyKey("logins", column=api.idempotency_key_column)).map(
        {**record, "timestamp": "2025-01-01"}, 0, 2
    )
    assert again.body["idempotency_key"] == item.body["idempotency_key"], "the key from the mapped column"


def test_a_declared_event_stream_without_those_fields_leaves_them_out():
    schema = {"type": "object", "properties": {"identity": {"type": "string"}, "event": {"type": "string"}}}
    api = api_of(mapped("event", schema), "logins", CONFIG)
    assert (api.timestamp_column, api.idempotency_key_column) == (None, None)


def test_a_stream_mapped_to_user_deletion_needs_the_configs_key():
    with pytest.raises(AirbyteTracedException) as caught:
        api_of(mapped("user_deletion", {"type": "object"}), "forget_me", CONFIG)
    assert "stream 'forget_me' is mapped to user_deletion, and deletion_api_key is not set" in caught.value.message
    keyed = HeapConfig.parse({"app_id": "11", "deletion_api_key": "k"})
    api = api_of(mapped("user_deletion", {"type": "object"}), "forget_me", keyed)
    item = mapper_for(api, IdempotencyKey("forget_me")).map({"identity": "jo@x.io", "plan": "pro"}, 0, 1)
    assert item.body == {"identity": "jo@x.io"}, "a deletion sends the user alone, never their other columns"
