"""Several streams and mappings in one connection, through `main.py write` against the sandbox."""

from __future__ import annotations

from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import catalog, config_for, platform_state, run_connector

USERS_TO_PROPERTIES = {
    "api_type": "add_user_properties",
    "identity_column": "user_id",
    "property_columns": "*, email_address as email, created_at as Sign Up Date, -ssn",
}
USERS_TO_SIGNED_UP = {
    "api_type": "track",
    "event_name": "Signed Up",
    "identity_column": "user_id",
    "timestamp_column": "created_at",
    "property_columns": "plan",
}
ORDERS_TO_ORDER_PLACED = {
    "api_type": "track",
    "event_name": "Order Placed",
    "identity_column": "user_id",
    "timestamp_column": "placed_at",
    "property_columns": "*, -card_number",
}
MAPPINGS = [
    {"stream": "users", "api": USERS_TO_PROPERTIES},
    {"stream": "users", "api": USERS_TO_SIGNED_UP},
    {"stream": "orders", "api": ORDERS_TO_ORDER_PLACED},
]


def user(n: int) -> dict:
    return {
        "user_id": f"u{n}",
        "email_address": f"person{n}@example.com",
        "created_at": f"2024-01-{n % 28 + 1:02d}T10:00:00+00:00",
        "ssn": f"000-00-{n:04d}",
        "plan": "pro" if n % 2 else "free",
    }


def order(n: int) -> dict:
    return {
        "order_id": n,
        "user_id": f"u{n % 50}",
        "placed_at": f"2024-02-{n % 28 + 1:02d}T12:00:00+00:00",
        "amount": n * 1.5,
        "card_number": f"4111-0000-0000-{n:04d}",
    }


def message(stream: str, data: dict) -> dict:
    return {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": 1666325394622}}


def two_streams(users: int, orders: int, state_every: int) -> tuple[list[dict], dict[str, list[int]]]:
    """Users and orders interleaved, with a platform STATE per stream every `state_every` of its records;
    returns the messages and, per state id, how many records of its stream it covers."""
    messages, covers, counts = [], {}, {"users": 0, "orders": 0}
    for n in range(max(users, orders)):
        for stream, total, make in (("users", users, user), ("orders", orders, order)):
            if n >= total:
                continue
            messages.append(message(stream, make(n)))
            counts[stream] += 1
            if counts[stream] % state_every == 0 or counts[stream] == total:
                state_id = len(covers) + 1
                messages.append(platform_state(state_id, name=stream))
                covers[state_id] = (stream, counts[stream])
    return messages, covers


def test_two_streams_through_three_mappings_reach_heap_exactly_with_per_stream_state(sandbox):
    messages, covers = two_streams(users=1_200, orders=2_500, state_every=400)
    config = config_for(sandbox, mappings=MAPPINGS)
    seen_at_state = []

    def on_message(output):
        if output["type"] == "STATE":
            stream, count = covers[output["state"]["id"]]
            users = {item["identity"] for item in sandbox.items("users")}
            events = sandbox.items("events")
            signed_up = {e["identity"] for e in events if e["event"] == "Signed Up"}
            placed = {e["properties"]["order_id"] for e in events if e["event"] == "Order Placed"}
            if stream == "users":
                expected = {f"u{n}" for n in range(count)}
                seen_at_state.append(expected <= users and expected <= signed_up)
            else:
                seen_at_state.append(set(range(count)) <= placed)

    run = run_connector(
        "write", config, messages, catalog_json=catalog("users", "orders", primary_key=[["id"]]), on_message=on_message
    )
    assert run.returncode == 0, run.stderr
    users = sandbox.items("users")
    events = sandbox.items("events")

    assert sorted(users, key=lambda u: int(u["identity"][1:])) == [
        {
            "identity": f"u{n}",
            "properties": {
                "email": f"person{n}@example.com",
                "Sign Up Date": user(n)["created_at"],
                "plan": user(n)["plan"],
            },
        }
        for n in range(1_200)
    ]
    keys = [event.pop("idempotency_key") for event in events]
    assert len(set(keys)) == len(events) == 1_200 + 2_500, "every event has a key of its own"
    signed_up = sorted((e for e in events if e["event"] == "Signed Up"), key=lambda e: int(e["identity"][1:]))
    assert signed_up == [
        {
            "identity": f"u{n}",
            "event": "Signed Up",
            "timestamp": user(n)["created_at"].replace("+00:00", ".000Z"),
            "properties": {"plan": user(n)["plan"]},
        }
        for n in range(1_200)
    ]
    placed = sorted((e for e in events if e["event"] == "Order Placed"), key=lambda e: e["properties"]["order_id"])
    assert placed == [
        {
            "identity": order(n)["user_id"],
            "event": "Order Placed",
            "timestamp": order(n)["placed_at"].replace("+00:00", ".000Z"),
            "properties": {
                "order_id": n,
                "user_id": order(n)["user_id"],
                "amount": n * 1.5,
            },
        }
        for n in range(2_500)
    ]
    sent = sandbox.state.snapshot()
    assert "card_number" not in str(sent) and "ssn" not in str(sent) and "000-00-" not in str(sent)

    assert sorted(state["id"] for state in run.states) == sorted(covers)
    for name in ("users", "orders"):
        ids = [state["id"] for state in run.states if state["stream"]["stream_descriptor"]["name"] == name]
        assert ids == sorted(ids), "one stream's STATEs pass in order (streams apart may interleave)"
    for state in run.states:
        stream, count = covers[state["id"]]
        assert state["stream"]["stream_descriptor"]["name"] == stream
        assert state["sourceStats"] == {"recordCount": 5.0} and state["x_future_field"] == {"nested": [1, "two", None]}
        previous = max((c for i, (s, c) in covers.items() if s == stream and i < state["id"]), default=0)
        assert state["destinationStats"] == {"recordCount": float(count - previous), "rejectedRecordCount": 0.0}
    assert all(seen_at_state) and len(seen_at_state) == len(covers), "a STATE passed before its records were in Heap"


def test_a_stream_without_a_mapping_or_a_mapping_without_a_stream_fails_before_any_request(sandbox):
    messages, _ = two_streams(users=10, orders=10, state_every=5)
    unmapped = config_for(sandbox, mappings=MAPPINGS[:2])
    run = run_connector("write", unmapped, messages, catalog_json=catalog("users", "orders"))
    assert run.returncode != 0
    assert run.errors[0]["failure_type"] == "config_error"
    assert "Stream 'orders' is in the connection but nothing loads it" in run.errors[0]["message"]

    missing = config_for(sandbox, mappings=MAPPINGS)
    run = run_connector("write", missing, messages, catalog_json=catalog("users"))
    assert run.returncode != 0
    assert "The mapping for stream 'orders' names a stream the connection does not have" in run.errors[0]["message"]
    assert sandbox.state.snapshot()["requests"] == 0


def test_check_validates_every_mapping_and_probes_each_api(sandbox):
    bad = [*MAPPINGS, {"stream": "orders", "api": {"api_type": "track", "identity_column": "user_id"}}]
    run = run_connector("check", config_for(sandbox, mappings=bad))
    status = run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "mappings.3.api.track" in status["message"] and "event_column" in status["message"]
    assert sandbox.state.snapshot()["requests"] == 0

    run = run_connector("check", config_for(sandbox, mappings=MAPPINGS))
    assert run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    assert sandbox.state.snapshot()["requests"] == 4, "two empty requests to each API the mappings use"


def test_a_configured_ceiling_holds_for_the_whole_app_across_mappings():
    """max_events_per_minute is the app id's: the sandbox counts 60,000 a minute over 5-second windows
    across every endpoint, with the one request's slack any window may hold beyond the pace over it
    (a minute never does: requests hold at most 3% of the ceiling); two mappings of one stream each
    paced at the full figure would pass it by far (9,700 in 5 s)."""
    messages, _ = two_streams(users=4_000, orders=0, state_every=1_000)
    with HeapSandbox(Faults(rate_limit=6_000, rate_window=5.0)) as limited:
        config = config_for(limited, mappings=MAPPINGS[:2], max_events_per_minute=60_000)
        run = run_connector("write", config, messages, catalog_json=catalog("users"))
        snapshot = limited.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert snapshot["accepted_count"] == 8_000
    assert snapshot["statuses"].get(429, 0) == 0
