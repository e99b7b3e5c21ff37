"""The config model: what the user configures, validated once."""

import json
from pathlib import Path

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_heap_analytics.config import HeapConfig, TrackApi

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
    assert config.api.properties is None
    assert config.endpoint_url == "https://heapanalytics.com/api/track"
    assert parse(region="EU").endpoint_url == "https://c.eu.heap-api.com/api/track"
    assert parse(region="EU", base_url="https://proxy.example/").endpoint_url == "https://proxy.example/api/track"
    assert parse(app_id=1234).app_id == "1234"


def test_property_columns_are_trimmed_and_case_sensitive():
    config = parse(api={**TRACK, "property_columns": " Plan , amount,identities.provider ,"})
    assert config.api.properties == ("Plan", "amount", "identities.provider")


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
    ],
)
def test_bad_configs_name_the_problem(overrides, fragment):
    assert fragment in error_of(**overrides)


def test_http_is_allowed_to_loopback_only():
    assert parse(base_url="http://127.0.0.1:8765").url == "http://127.0.0.1:8765"
    assert parse(base_url="http://localhost:1").url == "http://localhost:1"
    assert parse(base_url="http://[::1]:1").url == "http://[::1]:1"


def test_spec_and_model_know_the_same_options():
    spec_top = set(SPEC["connectionSpecification"]["properties"])
    assert spec_top == set(HeapConfig.model_fields)
    spec_apis = {
        option["properties"]["api_type"]["const"]: set(option["properties"])
        for option in SPEC["connectionSpecification"]["properties"]["api"]["oneOf"]
    }
    for model in HeapConfig.model_fields["api"].annotation.__args__:
        api_type = model.model_fields["api_type"].annotation.__args__[0]
        assert spec_apis[api_type] == set(model.model_fields)
