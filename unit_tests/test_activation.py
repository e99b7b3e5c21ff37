"""Data Activation's table of objects: what a stream mapped to one is loaded with."""

from airbyte_cdk.models import ConfiguredAirbyteStreamSerializer

from destination_heap_analytics.activation import api_of
from destination_heap_analytics.mapping import IdempotencyKey, mapper_for


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
    api = api_of(mapped("event", {"type": "object", "additionalProperties": True}), "logins")
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
    api = api_of(mapped("event", schema), "logins")
    assert (api.timestamp_column, api.idempotency_key_column) == (None, None)
