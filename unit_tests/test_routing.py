"""Routing: mappings matched to the catalog's streams, and idempotency keys kept apart per event mapping."""

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_heap_analytics.config import HeapConfig
from destination_heap_analytics.mapping import IdempotencyKey, mapper_for
from destination_heap_analytics.routing import routes

TRACK = {"api_type": "track", "event_column": "event", "identity_column": "email"}
USERS = {"api_type": "add_user_properties", "identity_column": "email"}
RECORD = {"email": "jo@x.io", "event": "Signed Up", "plan": "pro"}


def catalog(*streams):
    """A catalog of (name, namespace) streams."""
    return ConfiguredAirbyteCatalogSerializer.load(
        {
            "streams": [
                {
                    "stream": {
                        "name": name,
                        **({"namespace": namespace} if namespace else {}),
                        "json_schema": {"type": "object"},
                        "supported_sync_modes": ["incremental"],
                    },
                    "sync_mode": "incremental",
                    "destination_sync_mode": "append",
                }
                for name, namespace in streams
            ]
        }
    )


def config(*mappings, api=None):
    if api is not None:
        return HeapConfig.parse({"app_id": "11", "api": api})
    return HeapConfig.parse({"app_id": "11", "mappings": list(mappings)})


def keys(found):
    return [
        mapper_for(route.api, route.idempotency_key()).map(RECORD, 0, 1).body.get("idempotency_key") for route in found
    ]


def test_the_top_level_api_loads_the_single_stream_with_the_keys_of_earlier_versions():
    found = routes(config(api=TRACK), catalog(("users", None)))
    assert [(route.key, route.api.api_type) for route in found] == [(("users", None), "track")]
    legacy = mapper_for(found[0].api, found[0].idempotency_key())
    assert legacy.map(RECORD, 0, 1).body["idempotency_key"] == IdempotencyKey("users").derive(RECORD, [])


def test_two_event_mappings_of_one_record_get_different_keys():
    found = routes(
        config(
            {"stream": "users", "api": TRACK},
            {"stream": "users", "api": {**TRACK, "event_column": None, "event_name": "Signed Up"}},
            {"stream": "users", "api": {**TRACK, "event_column": None, "event_name": "Upgraded"}},
            {"stream": "users", "api": USERS},
        ),
        catalog(("users", None)),
    )
    event_keys = keys(found)[:3]
    assert len(set(event_keys)) == 3
    assert keys(found)[3] is None, "user properties carry no idempotency key"


def test_two_event_column_mappings_of_one_stream_are_refused_rather_than_rekeyed():
    with pytest.raises(AirbyteTracedException) as caught:
        routes(
            config({"stream": "users", "api": TRACK}, {"stream": "users", "api": {**TRACK, "event_column": "plan"}}),
            catalog(("users", None)),
        )
    assert "same idempotency keys" in caught.value.message and "fixed event_name" in caught.value.message


def test_a_mapping_without_a_namespace_takes_the_stream_without_one():
    found = routes(
        config({"stream": "users", "api": TRACK}, {"stream": "users", "namespace": "b", "api": TRACK}),
        catalog(("users", None), ("users", "b")),
    )
    assert [route.key for route in found] == [("users", None), ("users", "b")]


def test_a_lone_event_column_mapping_keeps_its_keys_when_an_event_name_mapping_joins():
    alone = keys(routes(config({"stream": "users", "api": TRACK}), catalog(("users", None))))
    joined = routes(
        config(
            {"stream": "users", "api": TRACK},
            {"stream": "users", "api": {**TRACK, "event_column": None, "event_name": "Signed Up"}},
        ),
        catalog(("users", None)),
    )
    assert keys(joined)[0] == alone[0]


def test_mappings_match_by_name_and_namespace():
    found = routes(
        config(
            {"stream": "users", "namespace": "crm", "api": TRACK},
            {"stream": "users", "namespace": "shop", "api": USERS},
        ),
        catalog(("users", "crm"), ("users", "shop")),
    )
    assert [(route.key, route.api.api_type) for route in found] == [
        (("users", "crm"), "track"),
        (("users", "shop"), "add_user_properties"),
    ]


@pytest.mark.parametrize(
    ("mappings", "streams", "fragment"),
    [
        (
            [{"stream": "users", "api": TRACK}],
            [("users", None), ("orders", None)],
            "Stream 'orders' is in the connection",
        ),
        ([{"stream": "orders", "api": TRACK}], [("users", None)], "names a stream the connection does not have"),
        ([{"stream": "users", "api": TRACK}], [("users", "a"), ("users", "b")], "give its mapping a namespace"),
        (
            [{"stream": "users", "api": TRACK}, {"stream": "users", "api": TRACK}],
            [("users", None)],
            "same idempotency keys",
        ),
    ],
)
def test_what_does_not_match_is_a_config_error_naming_it(mappings, streams, fragment):
    with pytest.raises(AirbyteTracedException) as caught:
        routes(config(*mappings), catalog(*streams))
    assert fragment in caught.value.message


def test_the_top_level_api_refuses_a_catalog_of_two_streams_pointing_to_mappings():
    with pytest.raises(AirbyteTracedException, match="use mappings"):
        routes(config(api=TRACK), catalog(("users", None), ("orders", None)))
