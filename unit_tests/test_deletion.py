"""User deletion: how users are cut into requests, and the token each request carries."""

from __future__ import annotations

import base64
import itertools
import logging
import threading

import orjson
import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from hypothesis import given, settings
from hypothesis import strategies as st

from destination_heap_analytics.config import HeapConfig
from destination_heap_analytics.deletion import (
    TOKEN_SECONDS,
    USERS_PER_REQUEST,
    DeletionClient,
    DeletionSender,
    _body,
)
from destination_heap_analytics.delivery import Accepted
from unit_tests.scripted_heap import Reply, ScriptedHeap

DELETE = {"api_type": "user_deletion", "identity_column": "email"}


def config(url: str = "https://heapanalytics.com", **options) -> HeapConfig:
    return HeapConfig.parse({"app_id": "11", "api": DELETE, "deletion_api_key": "k3y", "base_url": url, **options})


def encoded(identity: str) -> bytes:
    return orjson.dumps({"identity": identity})[1:]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=255), min_size=1, max_size=25_000),
    st.integers(min_value=10_000, max_value=2_000_000),
)
def test_users_go_in_order_in_requests_within_both_caps(lengths, max_bytes):
    users = [encoded(f"{index}-".ljust(length, "x")) for index, length in enumerate(lengths)]
    sender = DeletionSender(config(max_request_bytes=max_bytes), None, Accepted(), None, [], threading.Event())
    requests = sender._requests(users)
    assert [user for request in requests for user in request] == users
    for request in requests:
        assert 0 < len(request) <= USERS_PER_REQUEST
        assert len(_body(request)) <= max_bytes
        assert orjson.loads(_body(request)) == {"users": [orjson.loads(b"{" + user) for user in request]}
    for request, following in itertools.pairwise(requests):
        assert len(request) == USERS_PER_REQUEST or len(_body([*request, following[0]])) > max_bytes, "each full"


def test_a_token_is_taken_by_basic_auth_and_taken_again_once_old():
    now = [0.0]
    with ScriptedHeap() as heap:
        heap.answer(
            lambda request: (
                Reply(200, f'{{"access_token": "t{heap.call_count}"}}')
                if request.path.endswith("/auth_token")
                else Reply(201, '{"deletion_request_id": "d1", "status": "pending"}')
            )
        )
        client = DeletionClient(config(heap.url.removesuffix("/api/track")), threading.Event(), clock=lambda: now[0])
        client.delete(_body([encoded("a@x.io")]))
        now[0] = TOKEN_SECONDS + 1
        client.delete(_body([encoded("b@x.io")]))
        received = list(heap.received)
    assert [request.path for request in received] == [
        "/api/public/v0/auth_token",
        "/api/public/v0/user_deletion",
        "/api/public/v0/auth_token",
        "/api/public/v0/user_deletion",
    ]
    assert received[0].headers["Authorization"] == "Basic " + base64.b64encode(b"11:k3y").decode()
    assert [received[1].headers["Authorization"], received[3].headers["Authorization"]] == ["Bearer t1", "Bearer t3"]


def test_a_token_answer_without_a_token_stops_before_any_deletion():
    with ScriptedHeap() as heap:
        heap.answer(Reply(200, '{"token": "elsewhere"}'))
        client = DeletionClient(config(heap.url.removesuffix("/api/track")), threading.Event())
        with pytest.raises(AirbyteTracedException, match="holds no access_token"):
            client.delete(_body([encoded("a@x.io")]))
        assert heap.call_count == 1


def test_a_request_id_not_in_the_expected_form_is_not_logged(caplog):
    with ScriptedHeap() as heap:
        heap.answer(
            lambda request: (
                Reply(200, '{"access_token": "t"}')
                if request.path.endswith("/auth_token")
                else Reply(201, '{"deletion_request_id": "jo@x.io <script>", "status": "pending"}')
            )
        )
        log: list[dict] = []
        heap_config = config(heap.url.removesuffix("/api/track"))
        client = DeletionClient(heap_config, threading.Event())
        sender = DeletionSender(heap_config, client, Accepted(), None, log, threading.Event())
        with caplog.at_level(logging.INFO, logger="airbyte"):
            sender._delete([encoded("a@x.io")], {})
    assert log == [{"deletion_request_id": None, "users": 1}]
    assert "jo@x.io" not in caplog.text and "not in the expected form" in caplog.text
