"""The config model: what the user configures, validated once."""

import json
from pathlib import Path

import jsonschema
import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_heap_analytics.config import (
    AccountPropertiesApi,
    HeapConfig,
    IdentifyApi,
    PropertyColumn,
    PropertySelection,
    S3Storage,
    StreamMapping,
    TrackApi,
    UserDeletionApi,
    UserPropertiesApi,
)

SPEC = json.loads((Path(__file__).parent.parent / "destination_heap_analytics" / "spec.json").read_text())
TRACK = {"api_type": "track", "event_column": "event", "identity_column": "email"}


def parse(**overrides):
    return HeapConfig.parse({"app_id": "11", "api": TRACK, **overrides})


def error_of(**overrides):
    with pytest.raises(AirbyteTracedException) as caught:
        parse(**overrides)
    assert caught.value.failure_type == FailureType.config_error
    return caught.value.message


def test_defaults_and_regions():
    config = parse()
    assert isinstance(config.api, TrackApi)
    assert config.api.properties == PropertySelection((), rest=True, excluded=())
    assert config.endpoint_url(config.api) == "https://heapanalytics.com/api/track"
    eu = parse(region="EU")
    assert eu.endpoint_url(eu.api) == "https://c.eu.heap-api.com/api/track"
    proxied = parse(region="EU", base_url="https://proxy.example/")
    assert proxied.endpoint_url(proxied.api) == "https://proxy.example/api/track"
    assert parse(app_id=1234).app_id == "1234"


def test_property_columns_are_trimmed_and_case_sensitive():
    config = parse(api={**TRACK, "property_columns": " Plan , amount,identities.provider ,"})
    assert config.api.properties.named == (
        PropertyColumn("Plan", "Plan"),
        PropertyColumn("amount", "amount"),
        PropertyColumn("identities.provider", "identities.provider"),
    )
    assert not config.api.properties.rest


def test_property_columns_rename_and_leave_out():
    text = "*, email_address as email, created_at AS Sign Up Date, -ssn, - card.number"
    selection = parse(api={**TRACK, "property_columns": text}).api.properties
    assert selection.named == (PropertyColumn("email_address", "email"), PropertyColumn("created_at", "Sign Up Date"))
    assert selection.rest
    assert selection.excluded == ("ssn", "card.number")


def test_a_fixed_event_name_or_an_event_column():
    api = {"api_type": "track", "event_name": "Order Placed", "identity_column": "email"}
    assert parse(api=api).api.event_name == "Order Placed"


def test_mappings_load_streams_by_name():
    users = {"api_type": "add_user_properties", "identity_column": "email"}
    config = parse(
        api=None, mappings=[{"stream": "users", "api": users}, {"stream": "orders", "namespace": "shop", "api": TRACK}]
    )
    assert [(m.stream, m.namespace, m.api.api_type) for m in config.mappings] == [
        ("users", None, "add_user_properties"),
        ("orders", "shop", "track"),
    ]
    assert [api.api_type for api in config.apis] == ["add_user_properties", "track"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"app_id": "  "}, "app_id is empty"),
        ({"api": {**TRACK, "event_column": " "}}, "event_column is empty"),
        ({"base_url": "http://heapanalytics.com"}, "must be https"),
        ({"base_url": "ftp://127.0.0.1"}, "must be https"),
        ({"api": {"api_type": "add_user_properties", "identity_column": "e", "property_columns": "a,Id"}}, "'Id'"),
        ({"api": {"api_type": "webhook"}}, "api"),
        ({"max_events_per_minute": 0}, "max_events_per_minute"),
        ({"api": {**TRACK, "event_name": "Signed Up"}}, "set exactly one of event_column"),
        ({"api": {**TRACK, "event_column": None, "event_name": " "}}, "event_name is empty: give it a value"),
        ({"api": {"api_type": "track", "identity_column": "e"}}, "set exactly one of event_column"),
        ({"api": {**TRACK, "event_column": None, "event_name": "x" * 1025}}, "1024-character event names"),
        (
            {"api": {**TRACK, "property_columns": "plan, -ssn"}},
            "'-ssn' leaves out nothing: property_columns has no '*'",
        ),
        ({"api": {**TRACK, "property_columns": "*, a as X, b as X"}}, "both be sent as property 'X'"),
        ({"api": {**TRACK, "property_columns": "*, ssn, -ssn"}}, "'ssn' is both named and left out"),
        ({"api": {**TRACK, "property_columns": "*, plan as "}}, "needs a column and a Heap name"),
        ({"api": {**TRACK, "property_columns": "*, -"}}, "names no column"),
        ({"api": {**TRACK, "property_columns": "a as " + "n" * 1024}}, "1023-character property names"),
        (
            {"api": {"api_type": "add_user_properties", "identity_column": "e", "property_columns": "ref as ID"}},
            "'ID' cannot be a property",
        ),
        ({"mappings": [{"stream": "users", "api": TRACK}]}, "not both"),
        ({"api": None, "mappings": [{"stream": " ", "api": TRACK}]}, "mappings.0.stream"),
        ({"api": None, "mappings": [{"stream": "users", "api": {"api_type": "track"}}]}, "mappings.0.api.track"),
    ],
)
def test_bad_configs_name_the_problem(overrides, fragment):
    assert fragment in error_of(**overrides)


def test_http_is_allowed_to_loopback_only():
    assert parse(base_url="http://127.0.0.1:8765").url == "http://127.0.0.1:8765"
    assert parse(base_url="http://localhost:1").url == "http://localhost:1"
    assert parse(base_url="http://[::1]:1").url == "http://[::1]:1"


def test_spec_and_model_know_the_same_options():
    spec = SPEC["connectionSpecification"]["properties"]
    assert set(spec) == set(HeapConfig.model_fields)
    mapping = spec["mappings"]["items"]
    assert set(mapping["properties"]) == set(StreamMapping.model_fields)
    *apis, unset = spec["api"]["oneOf"]
    assert unset["properties"]["api_type"]["const"] == "none", "the form can say: no api, use mappings"
    assert mapping["properties"]["api"]["oneOf"] == apis, "a mapping's api is the top-level api"
    spec_apis = {option["properties"]["api_type"]["const"]: option for option in spec["api"]["oneOf"]}
    for model in TrackApi, UserPropertiesApi, AccountPropertiesApi, IdentifyApi, UserDeletionApi:
        api_type = model.model_fields["api_type"].annotation.__args__[0]
        option = spec_apis[api_type]
        assert set(option["properties"]) == set(model.model_fields)
        assert set(option["required"]) == {name for name, field in model.model_fields.items() if field.is_required()}


def test_the_spec_and_the_model_take_the_same_store_and_give_it_the_same_defaults():
    options = SPEC["connectionSpecification"]["properties"]["object_storage_config"]["oneOf"]
    s3 = next(option for option in options if option["title"] == "S3")["properties"]
    assert set(s3) == set(S3Storage.model_fields)
    model = S3Storage(storage_type="S3", s3_bucket_name="b")
    for name in ("format", "compression", "path_format", "file_name_format"):
        assert s3[name]["airbyte_hidden"] is True, "hidden in the UI, as Airbyte's destinations have them"
        default = getattr(model, name)
        assert s3[name]["default"] == (default.model_dump() if hasattr(default, "model_dump") else default)
    every = [
        {"format": form, "compression": {"compression_type": kind}}
        for form in ("CSV", "JSONL", {"format_type": "CSV"}, {"format_type": "JSONL"})
        for kind in ("No Compression", "GZIP")
    ]
    for storage in every:
        config = {"app_id": "11", "object_storage_config": {**S3, **storage}}
        jsonschema.validate(config, SPEC["connectionSpecification"])
        assert HeapConfig.parse(config).object_storage_config.format.format_type in ("CSV", "JSONL")


def _closed(node):
    """Every object schema in the spec that does not refuse unknown keys."""
    if isinstance(node, dict):
        schema = isinstance(node.get("properties"), dict) and ("type" in node or "required" in node)
        if schema and node.get("additionalProperties") is not False:
            yield node.get("title", "?")
        for value in node.values():
            yield from _closed(value)
    elif isinstance(node, list):
        for value in node:
            yield from _closed(value)


def test_a_misspelt_option_is_refused_with_the_option_meant():
    assert "api.track: unknown option 'property_column'; did you mean 'property_columns'?" in error_of(
        api={**TRACK, "property_column": "uid"}
    )
    assert "unknown option 'on_rejected_records'; did you mean 'on_rejected_record'?" in error_of(
        on_rejected_records="fail"
    )
    assert "unknown option 'max_event_per_minute'; did you mean 'max_events_per_minute'?" in error_of(
        max_event_per_minute=5
    )
    mapping = {"stream": "users", "api": TRACK, "namspace": "x"}
    assert "mappings.0: unknown option 'namspace'; did you mean 'namespace'?" in error_of(api=None, mappings=[mapping])
    assert list(_closed(SPEC["connectionSpecification"])) == [], "the spec refuses unknown keys at every level"


def test_an_unknown_api_type_names_the_valid_ones():
    message = error_of(api={"api_type": "identfy", "identity_column": "e"})
    assert message == (
        "Invalid configuration: api: api_type 'identfy' is unknown; "
        "use one of track, add_user_properties, add_account_properties, identify, user_deletion"
    )


def test_api_and_mappings_together_is_reported_as_such_even_half_filled():
    message = error_of(api={"api_type": "add_user_properties"}, mappings=[{"stream": "users", "api": TRACK}])
    assert "set either api" in message and "not both" in message and "identity_column" not in message
    unset = parse(api={"api_type": "none"}, mappings=[{"stream": "users", "api": TRACK}])
    assert unset.api is None and len(unset.mappings) == 1
    mapped_in_the_ui = HeapConfig.parse({"app_id": "11", "api": {"api_type": "none"}})
    assert mapped_in_the_ui.api is None and mapped_in_the_ui.mappings == (), "streams mapped in the Airbyte UI"


def test_a_base_url_without_a_scheme_says_so():
    assert "has no scheme: write it as https://heapanalytics.com" in error_of(base_url="heapanalytics.com")


def test_the_rejected_records_store_is_checked_like_every_option():
    assert "object_storage_config: storage_type 'GCS' is unknown; use one of None, S3" in error_of(
        object_storage_config={"storage_type": "GCS"}
    )
    assert "unknown option 's3_bucket'; did you mean 's3_bucket_name'?" in error_of(
        object_storage_config={"storage_type": "S3", "s3_bucket": "b"}
    )
    assert "must be http(s)://host[:port]" in error_of(
        object_storage_config={"storage_type": "S3", "s3_bucket_name": "b", "s3_endpoint": "https://u:p@h"}
    )
    assert parse(object_storage_config={"storage_type": "None"}).object_storage_config.storage_type == "None"


S3 = {"storage_type": "S3", "s3_bucket_name": "b"}


def test_the_store_takes_airbytes_standard_keys_and_the_earlier_format_text():
    standard = parse(
        object_storage_config={
            **S3,
            "format": {"format_type": "JSONL"},
            "compression": {"compression_type": "GZIP"},
            "path_format": "/heap/${STREAM_NAME}/${YEAR}/",
            "file_name_format": "{sync_id}_{timestamp}_{part_number}{format_extension}",
        }
    ).object_storage_config
    assert standard.format.format_type == "JSONL" and standard.compression.compression_type == "GZIP"
    assert standard.path_format == "heap/${STREAM_NAME}/${YEAR}"
    assert parse(object_storage_config={**S3, "format": "JSONL"}).object_storage_config.format.format_type == "JSONL"
    default = parse(object_storage_config=S3).object_storage_config
    assert (default.format.format_type, default.compression.compression_type) == ("CSV", "No Compression")
    assert (default.path_format, default.file_name_format) == (
        "${SYNC_ID}/${NAMESPACE}/${STREAM_NAME}/",
        "{date}_{timestamp}_{part_number}{format_extension}",
    )


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        (
            {"format": {"format_type": "Parquet"}},
            "object_storage_config.S3.format.format_type: Input should be 'CSV' or",
        ),
        ({"format": "XML"}, "object_storage_config.S3.format.format_type: Input should be 'CSV' or 'JSONL'"),
        (
            {"format": {"format_type": "CSV", "flatening": "x"}},
            "object_storage_config.S3.format: unknown option 'flatening'; the options here are: format_type",
        ),
        ({"compression": {"compression_type": "zstd"}}, "Input should be 'No Compression' or 'GZIP'"),
        ({"path_format": "${STREAM}/"}, "path_format: ${STREAM} is unknown; use ${SYNC_ID}, ${NAMESPACE}"),
        ({"file_name_format": "{date}_{part_number}"}, "must hold {part_number} and {timestamp}"),
        ({"file_name_format": "{timestamp}_{part}"}, "file_name_format: {part} is unknown; use {date}"),
        ({"file_name_format": "${EPOCH}/{timestamp}_{part_number}"}, "put folders and ${...} variables in path_format"),
    ],
)
def test_a_store_layout_that_cannot_be_written_is_a_config_error_naming_the_fix(storage, message):
    assert message in error_of(object_storage_config={**S3, **storage})


@pytest.mark.parametrize(
    "endpoint",
    ["http://user:s3cr3tpw@store.local:99999", "http://user:s3cr3tpw@store:local:9000", "https://u:s3cr3tpw@h"],
)
def test_a_store_endpoint_never_quotes_its_password_back(endpoint):
    storage = {"storage_type": "S3", "s3_bucket_name": "b", "s3_endpoint": endpoint}
    with pytest.raises(AirbyteTracedException) as raised:
        HeapConfig.parse({"app_id": "11", "object_storage_config": storage})
    assert "s3_endpoint" in raised.value.message and "s3cr3tpw" not in raised.value.message
    assert "s3cr3tpw" not in str(raised.value) and "s3cr3tpw" not in (raised.value.internal_message or "")


DELETE = {"api_type": "user_deletion", "identity_column": "email"}


def test_a_deletion_mapping_needs_the_key_and_the_us_host_and_one_key_column():
    assert "deletion_api_key is not set: copy the key from Heap's Account > Manage > Privacy & Security" in error_of(
        api=DELETE
    )
    for eu in ({"region": "EU"}, {"base_url": "https://c.eu.heap-api.com"}):
        assert "the region is EU: Heap documents its user deletion API for the US host only" in error_of(
            api=DELETE, deletion_api_key="k", **eu
        )
    both = {**DELETE, "user_id_column": "heap_id"}
    assert "set exactly one of identity_column and user_id_column" in error_of(api=both, deletion_api_key="k")
    assert "sends no properties" in error_of(api={**DELETE, "property_columns": "plan"}, deletion_api_key="k")
    assert "max_deletions_per_sync" in error_of(api=DELETE, deletion_api_key="k", max_deletions_per_sync=0)
    assert "max_deletions_per_sync" in error_of(api=DELETE, deletion_api_key="k", max_deletions_per_sync=10**7)
    config = parse(api=DELETE, deletion_api_key="secret-key")
    assert config.max_deletions_per_sync == 100_000 and config.api.key_field == "identity"
    assert "secret-key" not in repr(config) and "secret-key" not in str(config.model_dump())
    assert parse(deletion_api_key="").deletion_api_key is None, "an emptied form field is no key"
