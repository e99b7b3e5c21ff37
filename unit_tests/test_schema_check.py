"""Configured columns are checked against the stream's schema before anything is sent."""

import json
from pathlib import Path

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_heap_analytics.config import HeapConfig
from destination_heap_analytics.schema_check import check_columns

SAMPLE_CATALOG = Path(__file__).resolve().parent.parent / "sample_files" / "configured_catalog.json"


def stream(schema=None):
    catalog = json.loads(SAMPLE_CATALOG.read_text())
    if schema is not None:
        catalog["streams"][0]["stream"]["json_schema"] = schema
    return ConfiguredAirbyteCatalogSerializer.load(catalog).streams[0]


def api(**fields):
    return HeapConfig.parse({"app_id": "11", "api": fields}).api


TRACK = {"api_type": "track", "event_column": "identities.connection", "identity_column": "email"}


def test_declared_columns_pass_including_dotted_and_flattened_paths():
    check_columns(api(**TRACK, property_columns="identities_provider,identities.isSocial,name"), stream())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {**TRACK, "event_column": "identities.conection"},
            "event_column 'identities.conection' is not in stream 'users'; did you mean 'identities.connection'?",
        ),
        (
            {**TRACK, "identity_column": "emial"},
            "identity_column 'emial' is not in stream 'users'; did you mean 'email'?",
        ),
        (
            {**TRACK, "property_columns": "name,nick_name"},
            "property_columns 'nick_name' is not in stream 'users'; did you mean 'nickname'?",
        ),
        (
            {**TRACK, "property_columns": "*, nick_name as Nickname"},
            "property_columns 'nick_name' is not in stream 'users'; did you mean 'nickname'?",
        ),
        (
            {**TRACK, "property_columns": "*, -identities.provdier"},
            "property_columns 'identities.provdier' is not in stream 'users'; did you mean 'identities.provider'?",
        ),
        (
            {**TRACK, "timestamp_column": "zzz"},
            "timestamp_column 'zzz' is not in stream 'users'; its columns are: blocked, created_at",
        ),
    ],
)
def test_a_missing_column_is_named_with_the_closest_existing_one(fields, message):
    with pytest.raises(AirbyteTracedException) as caught:
        check_columns(api(**fields), stream())
    assert caught.value.message.startswith(message)


def test_a_schema_that_allows_anything_is_not_checked():
    anything = stream({"type": "object", "additionalProperties": True})
    check_columns(api(**{**TRACK, "event_column": "whatever"}), anything)


def test_free_form_nested_objects_accept_any_path_below_them():
    schema = {"type": "object", "properties": {"email": {"type": "string"}, "meta": {"type": ["null", "object"]}}}
    check_columns(api(**{**TRACK, "event_column": "meta.kind.name"}), stream(schema))
