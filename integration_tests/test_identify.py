"""Identify: one pair a request, many in flight, each valid pair linked exactly once, the rest counted and kept."""

from __future__ import annotations

from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import activation_stream, config_for, platform_state, run_connector

IDENTIFY = {
    "api_type": "identify",
    "user_id_column": "heap_user_id",
    "identity_column": "email",
    "timestamp_column": "seen_at",
}


def login(seq: int, **data: object) -> dict:
    body = {"heap_user_id": 1_000_000 + seq, "email": f"user{seq}@example.com", "seen_at": "2024-01-05T10:00:00Z"}
    body.update(data)
    return {"type": "RECORD", "record": {"stream": "users", "data": body, "emitted_at": 1666325394622}}


def test_pairs_are_linked_one_request_each_and_bad_ones_are_counted_by_reason():
    messages = [login(n) for n in range(300)]
    messages += [
        login(300, heap_user_id="12a"),
        login(301, heap_user_id=-1),
        login(302, heap_user_id=2**53),
        login(303, heap_user_id="١٢٣"),
        login(304, heap_user_id=1.5),
        login(305, email="x" * 256),
        login(306, email=""),
    ]
    messages.append(platform_state(1))
    with HeapSandbox(Faults(latency=0.05)) as sandbox:
        run = run_connector("write", config_for(sandbox, IDENTIFY), messages)
        links = sandbox.items("identify")
        snapshot = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert sorted(links, key=lambda link: int(link["user_id"])) == [
        {"user_id": str(1_000_000 + n), "identity": f"user{n}@example.com", "timestamp": "2024-01-05T10:00:00.000Z"}
        for n in range(300)
    ]
    assert snapshot["requests"] == 300, "one pair a request, none sent twice"
    assert run.summary["unmappable_by_reason"] == {
        "user_id is not a whole number from 0 to 2^53 - 1": 4,
        "user_id is blank or a placeholder such as 'null' or '0' (Heap would merge unrelated users)": 1,
        "identity longer than 255 characters": 1,
        "missing identity": 1,
    }
    assert run.states[0]["destinationStats"] == {"recordCount": 300.0, "rejectedRecordCount": 7.0}


def test_heaps_silent_drops_are_documented_behaviour_not_errors():
    first = [login(0), login(0, email="other@example.com")]
    many = [login(n, email="shared@example.com") for n in range(1, 13)]
    with HeapSandbox() as sandbox:
        run = run_connector("write", config_for(sandbox, IDENTIFY), [*first, *many, platform_state(1)])
        snapshot = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert snapshot["links_dropped"] == 3, "a second identity for one user id, an 11th and 12th user id for one"
    assert run.summary["records_delivered"] == 14, "Heap accepted every call; the drops are Heap's own"


def test_check_with_identify_proves_the_app_id_with_an_empty_track_request():
    with HeapSandbox(app_ids={"11"}) as sandbox:
        good = run_connector("check", config_for(sandbox, IDENTIFY))
        bad = run_connector("check", {**config_for(sandbox, IDENTIFY), "app_id": "12"})
    assert good.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    status = bad.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert (
        status["status"] == "FAILED"
        and "Heap answers app_id '12' as it answers an app id no environment has" in status["message"]
    )


def test_identify_is_a_data_activation_object_too():
    stream = activation_stream("logins", "identify", ["user_id", "identity"])
    record = {
        "type": "RECORD",
        "record": {"stream": "logins", "data": {"user_id": "42", "identity": "jo@x.io"}, "emitted_at": 1},
    }
    with HeapSandbox() as sandbox:
        run = run_connector(
            "write",
            {"app_id": "11", "base_url": sandbox.url},
            [record, platform_state(1, "logins")],
            catalog_json={"streams": [stream]},
        )
        links = sandbox.items("identify")
    assert run.returncode == 0, run.stderr
    assert links == [{"user_id": "42", "identity": "jo@x.io"}]


def test_calls_sharing_a_user_id_reach_heap_in_source_order_with_many_in_flight():
    """Heap keeps a user id's first link for good: with 64 calls in flight and some answers slow (retried ones
    too), the second identity of each user id must never overtake the first."""
    messages = []
    for n in range(400):
        messages.append(login(n, email=f"first{n}@example.com"))
        messages.append(login(n, email=f"second{n}@example.com"))
    messages.append(platform_state(1))
    with HeapSandbox(Faults(stall_rate=0.3, stall_seconds=0.2, fail_rate=0.05, seed=4)) as sandbox:
        run = run_connector("write", config_for(sandbox, IDENTIFY), messages)
        links = sandbox.items("identify")
        snapshot = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert run.summary["retries"] > 0
    assert {link["user_id"]: link["identity"] for link in links} == {
        str(1_000_000 + n): f"first{n}@example.com" for n in range(400)
    }
    assert snapshot["links_dropped"] == 400, "each second identity was sent after the first, and dropped by Heap"


def test_a_whole_number_float_is_a_user_id_on_identify_as_on_track():
    messages = [login(0, heap_user_id=8675309.0), login(1, heap_user_id=1e3), platform_state(1)]
    with HeapSandbox() as sandbox:
        run = run_connector("write", config_for(sandbox, IDENTIFY), messages)
        links = sandbox.items("identify")
    assert run.returncode == 0, run.stderr
    assert sorted(link["user_id"] for link in links) == ["1000", "8675309"]  # two users: sent in either order
