"""User deletion through the sandbox's privacy API: tokens, 10,000 users a request, each user once, the guards."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import activation_stream, catalog, config_for, platform_state, run_connector

KEY = "sandbox-deletion-key"
DELETE = {"api_type": "user_deletion", "identity_column": "email"}


def forget(seq: int, stream: str = "users", **data: object) -> dict:
    body = {"email": f"user{seq}@example.com", "requested_at": "2024-01-05"}
    body.update(data)
    return {"type": "RECORD", "record": {"stream": stream, "data": body, "emitted_at": 1666325394622}}


def deletion_config(sandbox: HeapSandbox, **options: object) -> dict:
    return config_for(sandbox, DELETE, **{"deletion_api_key": KEY, **options})


def test_25000_deletions_are_three_requests_each_user_once_and_every_state_passes_after_them():
    messages = []
    for seq in range(25_000):
        messages.append(forget(seq))
        if seq % 10 == 0:
            messages.append(forget(seq))  # asked twice: deleted once
        if (seq + 1) % 5_000 == 0:
            messages.append(platform_state(seq // 5_000 + 1))
    deleted_when_passed = []
    with HeapSandbox() as sandbox:

        def on_message(message: dict) -> None:
            if message["type"] == "STATE":
                deleted_when_passed.append(len(sandbox.state.snapshot()["deleted"]))

        run = run_connector("write", deletion_config(sandbox), messages, on_message=on_message)
        received = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert [request["users"] for request in received["deletion_requests"]] == [10_000, 10_000, 5_000]
    assert received["statuses"] == {200: 1, 201: 3}, "one token, three requests, none refused and split"
    deleted = [user["identity"] for user in received["deleted"]]
    assert sorted(deleted) == sorted(f"user{seq}@example.com" for seq in range(25_000)), "each user once"
    assert deleted_when_passed == [25_000] * 5, "no STATE passes before the deletions it covers are accepted"
    assert [state["destinationStats"] for state in run.states] == [
        {"recordCount": 5_500.0, "rejectedRecordCount": 0.0}
    ] * 5
    ids = [request["id"] for request in received["deletion_requests"]]
    assert [request["deletion_request_id"] for request in run.summary["deletion_requests"]] == ids
    assert sum(any(request_id in line for line in run.logs) for request_id in ids) == 3, "each id is logged"
    assert not any("user1@example.com" in line for line in run.logs), "no identity reaches the log"


def test_a_wrong_key_fails_check_and_write_before_any_deletion():
    with HeapSandbox() as sandbox:
        good = run_connector("check", deletion_config(sandbox))
        wrong = deletion_config(sandbox, deletion_api_key="not-the-key")
        checked = run_connector("check", wrong)
        run = run_connector("write", wrong, [forget(1), forget(2), platform_state(1)])
        received = sandbox.state.snapshot()
    assert good.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    assert "token for deletion_api_key" in good.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["message"]
    status = checked.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "Heap refused deletion_api_key" in status["message"]
    assert "not-the-key" not in checked.stdout + run.stdout + run.stderr, "the key is never echoed"
    assert run.returncode != 0 and run.errors[0]["failure_type"] == "config_error"
    assert "deletion_api_key" in run.errors[0]["message"]
    assert received["deleted"] == [] and run.states == []


def test_tokens_that_expire_mid_sync_are_taken_again():
    messages = [forget(seq) for seq in range(25_000)] + [platform_state(1)]
    with HeapSandbox(Faults(token_uses=1)) as sandbox:
        run = run_connector("write", deletion_config(sandbox), messages)
        received = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert len(received["deleted"]) == 25_000 and len(received["deletion_requests"]) == 3
    assert received["tokens_given"] == 3, "the first token, then one after each 401"
    assert received["statuses"].get(401) == 2
    assert run.states[0]["destinationStats"] == {"recordCount": 25_000.0, "rejectedRecordCount": 0.0}


def test_throttling_and_faults_are_retried_and_a_refused_user_is_rejected_alone():
    messages = [forget(seq) for seq in range(2_000)] + [platform_state(1)]
    faults = Faults(throttle_first=2, retry_after=0, refuse_deletion="user1234@example.com")
    with HeapSandbox(faults) as sandbox:
        run = run_connector("write", deletion_config(sandbox), messages)
        received = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert len(received["deleted"]) == 1_999
    assert "user1234@example.com" not in {user["identity"] for user in received["deleted"]}
    assert run.states[0]["destinationStats"] == {"recordCount": 1_999.0, "rejectedRecordCount": 1.0}
    assert run.summary["retries"] == 2 and run.summary["records_rejected"] == 1


def test_placeholders_are_rejected_and_a_dry_run_deletes_nothing():
    messages = [forget(1), forget(2, email="null"), forget(3, email=" "), forget(4, email="undefined"), forget(5)]
    ended = {"stream_descriptor": {"name": "users"}, "status": "COMPLETE"}
    messages.append({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": ended}})
    messages.append(platform_state(1))
    with HeapSandbox() as sandbox:
        run = run_connector("write", deletion_config(sandbox), messages)
        dry = run_connector("write", deletion_config(sandbox), [forget(9), platform_state(2)], extra_args=["--dry-run"])
        received = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert sorted(user["identity"] for user in received["deleted"]) == ["user1@example.com", "user5@example.com"]
    assert run.states[0]["destinationStats"] == {"recordCount": 2.0, "rejectedRecordCount": 3.0}
    (end,) = [line for line in run.logs if line.startswith("The source ended stream 'users'")]
    assert "stream 'users' to user_deletion: 5 read, 0 accepted by Heap" in end
    assert "2 held until the input ends" in end, "deletions wait, and the progress says so"
    assert set(run.summary["unmappable_by_reason"]) == {
        "identity is blank or a placeholder such as 'null' or 'undefined' (Heap would merge unrelated users)"
    }
    assert dry.returncode == 0, dry.stderr
    assert any("1 users would be deleted in 1 requests" in line for line in dry.logs)
    assert len(received["deletion_requests"]) == 1, "the dry run sent nothing"
    assert received["tokens_given"] == 1


def test_more_users_than_the_guard_allows_deletes_none_and_names_the_option():
    over = [forget(seq) for seq in range(101)] + [platform_state(1)]
    repeated = [forget(seq % 100) for seq in range(300)] + [platform_state(1)]
    with HeapSandbox() as sandbox:
        run = run_connector("write", deletion_config(sandbox, max_deletions_per_sync=100), over)
        nothing = sandbox.state.snapshot()
        again = run_connector("write", deletion_config(sandbox, max_deletions_per_sync=100), repeated)
        received = sandbox.state.snapshot()
    assert run.returncode != 0 and run.states == []
    assert nothing["deleted"] == [] and nothing["tokens_given"] == 0
    message = run.errors[0]["message"]
    assert "max_deletions_per_sync (100)" in message and "nothing of this sync was deleted" in message
    assert again.returncode == 0, again.stderr
    assert len(received["deleted"]) == 100, "a user asked for three times counts once against the guard"


def test_a_deleted_identity_leaves_the_snapshot_so_its_properties_are_sent_again(tmp_path: Path):
    users = [{"type": "RECORD", "record": {"stream": "users", "data": {"email": f"u{n}@x.io", "plan": "pro"},
                                           "emitted_at": 1666325394622}} for n in range(5)]  # fmt: skip
    mappings = [
        {"stream": "users", "api": {"api_type": "add_user_properties", "identity_column": "email"}},
        {"stream": "forget", "api": DELETE},
    ]
    change_detection = {"store": "local", "path": str(tmp_path / "snapshot")}
    both = catalog("users", "forget")
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, mappings=mappings, deletion_api_key=KEY, change_detection=change_detection)
        first = run_connector("write", config, [*users, platform_state(1)], catalog_json=both)
        second = run_connector(
            "write", config, [*users, forget(0, stream="forget", email="u3@x.io"), platform_state(2)], catalog_json=both
        )
        third = run_connector("write", config, [*users, platform_state(3)], catalog_json=both)
        sent = [user["identity"] for user in sandbox.items("users")]
        received = sandbox.state.snapshot()
    assert [run.returncode for run in (first, second, third)] == [0, 0, 0], third.stderr
    assert [user["identity"] for user in received["deleted"]] == ["u3@x.io"]
    assert second.summary["records_unchanged"] == 5, "nothing changed in users; the deletion is never skipped"
    assert sent == [f"u{n}@x.io" for n in range(5)] + ["u3@x.io"], "the deleted user's properties are sent again"


def test_discover_offers_user_deletion_only_with_a_key_and_a_mapped_stream_needs_one():
    plain = run_connector("discover", {"app_id": "11"})
    keyed = run_connector("discover", {"app_id": "11", "deletion_api_key": KEY})
    names = [
        {op["object_name"] for op in run.of_type("DESTINATION_CATALOG")[0]["destination_catalog"]["operations"]}
        for run in (plain, keyed)
    ]
    deletions = {"user_deletion", "user_deletion_by_user_id"}
    assert not deletions & names[0] and deletions <= names[1]
    mapped = {
        "streams": [
            activation_stream("forget_me", "user_deletion", ["identity"]),
            activation_stream("forget_sdk", "user_deletion_by_user_id", ["user_id"]),
        ]
    }
    messages = [
        {"type": "RECORD", "record": {"stream": "forget_me", "data": {"identity": "jo@x.io"}, "emitted_at": 1}},
        {"type": "RECORD", "record": {"stream": "forget_sdk", "data": {"user_id": "8675309"}, "emitted_at": 1}},
        platform_state(1, "forget_me"),
        platform_state(2, "forget_sdk"),
    ]
    with HeapSandbox() as sandbox:
        refused = run_connector("write", config_for(sandbox), messages, catalog_json=mapped)
        run = run_connector("write", deletion_config(sandbox), messages, catalog_json=mapped)
        received = sandbox.state.snapshot()
    assert refused.returncode != 0 and "deletion_api_key is not set" in refused.errors[0]["message"]
    assert run.returncode == 0, run.stderr
    assert received["deleted"] == [{"identity": "jo@x.io"}, {"user_id": "8675309"}], "one lane, one request"
    assert [state["destinationStats"]["recordCount"] for state in run.states] == [1.0, 1.0]


def test_deletions_go_after_every_other_request_of_the_sync():
    mappings = [
        {"stream": "forget", "api": DELETE},
        {"stream": "users", "api": {"api_type": "add_user_properties", "identity_column": "email"}},
    ]
    messages = [forget(0, stream="forget"), forget(0, plan="pro"), platform_state(1, "forget"), platform_state(2)]
    with HeapSandbox(Faults(latency=0.3)) as sandbox:
        config = config_for(sandbox, mappings=mappings, deletion_api_key=KEY)
        run = run_connector("write", config, messages, catalog_json=catalog("forget", "users"))
        received = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    ((properties_at, _),), (deletion,) = received["accepted_requests"], received["deletion_requests"]
    assert deletion["at"] - sandbox.state.started > properties_at, "the user is not brought back after deletion"


def test_more_states_than_can_be_held_before_the_deletions_fails_clearly_and_deletes_nothing():
    messages = [message for seq in range(10_001) for message in (forget(seq), platform_state(seq))]
    with HeapSandbox() as sandbox:
        run = run_connector("write", deletion_config(sandbox), messages)
        received = sandbox.state.snapshot()
    assert run.returncode != 0 and run.states == []
    assert "More than 10,000 STATE messages" in run.errors[0]["message"]
    assert received["deleted"] == [] and received["tokens_given"] == 0


def test_the_guides_status_check_answers_for_each_request_id():
    with HeapSandbox() as sandbox:
        run = run_connector("write", deletion_config(sandbox), [forget(1), platform_state(1)])
        basic = base64.b64encode(f"11:{KEY}".encode()).decode()
        asked = urllib.request.Request(sandbox.url + "/api/public/v0/auth_token", method="POST")
        asked.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(asked, timeout=10) as answer:
            token = json.loads(answer.read())["access_token"]
        (request,) = run.summary["deletion_requests"]
        status = urllib.request.Request(
            f"{sandbox.url}/api/public/v0/deletion_status/{request['deletion_request_id']}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(status, timeout=10) as answer:
            assert json.loads(answer.read())["status"] == "complete"
    assert request["users"] == 1


def test_users_are_deleted_by_heap_user_id_too():
    by_user_id = {"api_type": "user_deletion", "user_id_column": "heap_user_id"}
    messages = [forget(n, heap_user_id=user_id) for n, user_id in enumerate([8675309, "007", "0", "12a", 8675309])]
    with HeapSandbox() as sandbox:
        config = config_for(sandbox, by_user_id, deletion_api_key=KEY)
        run = run_connector("write", config, [*messages, platform_state(1)])
        received = sandbox.state.snapshot()
    assert run.returncode == 0, run.stderr
    assert received["deleted"] == [{"user_id": "8675309"}, {"user_id": "7"}]
    assert run.states[0]["destinationStats"] == {"recordCount": 3.0, "rejectedRecordCount": 2.0}


def test_check_refuses_a_deletion_key_with_the_eu_region_without_asking_for_a_token():
    with HeapSandbox() as sandbox:
        checked = run_connector(
            "check", {"app_id": "11", "base_url": sandbox.url, "region": "EU", "deletion_api_key": KEY}
        )
        received = sandbox.state.snapshot()
    status = checked.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "the region is EU" in status["message"]
    assert received["tokens_given"] == 0
