"""Change detection end to end: `main.py write` against the sandbox, the snapshot in a real directory or in
the S3-compatible server, re-synced, changed, refreshed and killed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest

from integration_tests.forked import MAIN
from integration_tests.heap_sandbox import Faults, HeapSandbox
from integration_tests.support import catalog, config_for, record, run_connector, stream_messages

USERS = {"api_type": "add_user_properties", "identity_column": "email", "property_columns": "plan, seats"}


def users(count: int, plan=lambda seq: "free", seats=lambda seq: 1, state_every: int = 500):
    return stream_messages(
        count, state_every=state_every, make=lambda seq: record(seq, email=f"u{seq}", plan=plan(seq), seats=seats(seq))
    )


def local(sandbox: HeapSandbox, folder, api=None, **options):
    return config_for(sandbox, api, change_detection={"store": "local", "path": str(folder)}, **options)


def counted(run) -> int:
    """Records the run's STATEs say were delivered or rejected: what the platform checks against the source."""
    return sum(s["destinationStats"]["recordCount"] + s["destinationStats"]["rejectedRecordCount"] for s in run.states)


def test_an_unchanged_resync_sends_nothing_and_delivers_every_record(sandbox, tmp_path):
    config = local(sandbox, tmp_path)
    first = run_connector("write", config, stream_messages(3_000, state_every=500))
    assert first.returncode == 0, first.stderr
    sent = sandbox.state.snapshot()["requests"]
    again = run_connector("write", config, stream_messages(3_000, state_every=500))
    assert again.returncode == 0, again.stderr
    assert sandbox.state.snapshot()["requests"] == sent, "the re-sync sent a request"
    assert counted(again) == 3_000 and all(s["destinationStats"]["rejectedRecordCount"] == 0 for s in again.states)
    assert again.summary["records_unchanged"] == again.summary["records_delivered"] == 3_000
    (mapping,) = again.summary["mappings"]
    assert mapping["records_unchanged"] == 3_000 and mapping["records_accepted"] == 0
    assert any(log.startswith("Sync finished") and "3,000 unchanged (skipped)" in log for log in again.logs)


def test_200_changed_and_300_new_of_20000_users_send_exactly_500(sandbox, tmp_path):
    config = local(sandbox, tmp_path, USERS)
    assert run_connector("write", config, users(19_700)).returncode == 0
    before = len(sandbox.items("users"))
    changed = set(random.Random(3).sample(range(19_700), 200))
    run = run_connector("write", config, users(20_000, plan=lambda seq: "pro" if seq in changed else "free"))
    assert run.returncode == 0, run.stderr
    sent = sandbox.items("users")[before:]
    assert len(sent) == 500
    new = range(19_700, 20_000)
    assert {u["identity"] for u in sent} == {f"u{seq}" for seq in changed} | {f"u{seq}" for seq in new}
    assert counted(run) == 20_000 and run.summary["records_unchanged"] == 19_500


def test_what_heap_refused_is_sent_again_and_a_dry_run_says_what_would_be_sent(tmp_path):
    with HeapSandbox(Faults(poison="POISON")) as sandbox:
        config = local(sandbox, tmp_path, {**USERS, "property_columns": "plan"})
        plans = lambda seq: "POISON" if seq % 100 == 0 else "free"  # noqa: E731
        first = run_connector("write", config, users(1_000, plan=plans))
        assert first.returncode == 0 and first.summary["records_rejected"] == 10
        dry = run_connector("write", {**config, "dry_run": True}, users(1_000))
        assert dry.summary["records_that_would_be_sent"] == 10 and dry.summary["records_unchanged"] == 990
        before = len(sandbox.items("users"))
        again = run_connector("write", config, users(1_000))
        resent = sandbox.items("users")[before:]
    assert again.returncode == 0, again.stderr
    assert sorted(u["identity"] for u in resent) == sorted(f"u{seq}" for seq in range(0, 1_000, 100))


@pytest.mark.parametrize(
    "change",
    [
        {"api": {**USERS, "property_columns": "plan"}},
        {"app_id": "12"},
        {"catalog": {"generation_id": 2, "minimum_generation_id": 2}},
    ],
    ids=["mapping", "app id", "refresh"],
)
def test_a_changed_mapping_app_id_or_a_refresh_sends_everything_again(sandbox, tmp_path, change):
    generation = {"generation_id": 1, "minimum_generation_id": 0}
    config = local(sandbox, tmp_path, USERS)
    first = catalog()
    first["streams"][0].update(generation)
    assert run_connector("write", config, users(500), catalog_json=first).returncode == 0
    second = catalog()
    second["streams"][0].update(change.get("catalog", generation))
    changed = {**config, **{key: value for key, value in change.items() if key != "catalog"}}
    before = len(sandbox.items("users"))
    run = run_connector("write", changed, users(500), catalog_json=second)
    assert run.returncode == 0, run.stderr
    assert len(sandbox.items("users")) - before == 500
    assert any("starts from an empty snapshot" in log for log in run.logs)


def final_properties(sandbox: HeapSandbox) -> dict[str, dict]:
    """What Heap holds per identity: every accepted update merged in the order Heap took them."""
    held: dict[str, dict] = {}
    for update in sandbox.items("users"):
        held.setdefault(update["identity"], {}).update(update["properties"])
    return held


def test_syncs_killed_at_random_moments_never_leave_heap_behind_the_source(tmp_path):
    """Each sync flips some users' plans (back, often: the value the snapshot knew); kills land anywhere, mid
    request included. After one sync that ends, Heap holds every user's latest plan."""
    rng = random.Random(7)
    with HeapSandbox(Faults(latency=0.005, drop_rate=0.05)) as sandbox:
        config = local(sandbox, tmp_path, USERS, max_events_per_minute=30_000)
        plans = {}
        for _ in range(8):
            plans = {seq: rng.choice(["free", "pro"]) for seq in range(3_000)}
            run = run_connector(
                "write", config, users(3_000, plan=plans.__getitem__, state_every=100), timeout=rng.uniform(0.3, 4)
            )
            assert run.returncode in (0, -9, 137), run.stderr
        last = run_connector("write", config, users(3_000, plan=plans.__getitem__))
        assert last.returncode == 0, last.stderr
        held = final_properties(sandbox)
    assert {identity: p["plan"] for identity, p in held.items()} == {f"u{seq}": plans[seq] for seq in range(3_000)}


def test_a_snapshot_path_that_cannot_be_written_is_a_config_error_before_any_request(sandbox, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    config = local(sandbox, blocked / "snapshot")
    run = run_connector("write", config, stream_messages(5))
    assert run.returncode != 0 and run.errors[0]["failure_type"] == "config_error"
    assert run.errors[0]["message"].startswith(f"change_detection.path '{blocked / 'snapshot'}' cannot be written")
    assert sandbox.state.snapshot()["requests"] == 0
    status = run_connector("check", config).of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "change_detection.path" in status["message"]
    fine = run_connector("check", local(sandbox, tmp_path / "ok")).of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert fine["status"] == "SUCCEEDED" and "change-detection folder" in fine["message"]


def in_a_fresh_container(tmp_path, name: str, config: dict, messages: list[dict]) -> subprocess.CompletedProcess:
    """`python main.py write` from its own working directory, HOME and temp directory, as a new pod runs."""
    home = tmp_path / name
    (home / "tmp").mkdir(parents=True)
    (home / "config.json").write_text(json.dumps(config))
    (home / "catalog.json").write_text(json.dumps(catalog()))
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(home / "tmp")}
    lines = "".join(json.dumps(message) + "\n" for message in messages)
    args = [sys.executable, MAIN, "write", "--config", "config.json", "--catalog", "catalog.json"]
    return subprocess.run(args, input=lines.encode(), capture_output=True, cwd=home, env=env, timeout=120)


def test_the_object_store_snapshot_follows_the_connection_to_a_new_container(s3, bucket, sandbox, tmp_path):
    storage = s3.storage(bucket, bucket_path="heap")
    config = config_for(sandbox, USERS, object_storage_config=storage, change_detection={"store": "object_storage"})
    messages = list(users(2_000))
    first = in_a_fresh_container(tmp_path, "first", config, messages)
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    assert len(sandbox.items("users")) == 2_000
    second = in_a_fresh_container(tmp_path, "second", config, messages)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    assert len(sandbox.items("users")) == 2_000, "the second container sent what Heap had"
    assert not list((tmp_path / "second" / "tmp").iterdir()), "the working copy is left behind"
    keys = set(s3.objects(bucket))
    assert "heap/heap_change_detection/app_11/heap_snapshot.sqlite3" in keys
    assert not any(key.endswith(".lock") for key in keys), "the lock outlived the sync"


def test_a_second_sync_on_one_object_store_snapshot_fails_clearly_and_a_stale_lock_is_taken_over(s3, bucket, sandbox):
    storage = s3.storage(bucket)
    config = config_for(sandbox, USERS, object_storage_config=storage, change_detection={"store": "object_storage"})
    assert run_connector("write", config, users(300)).returncode == 0
    lock = "heap_change_detection/app_11/heap_snapshot.lock"
    s3.client().put_object(Bucket=bucket, Key=lock, Body=json.dumps({"owner": "other", "renewed": time.time()}))
    busy = run_connector("write", config, users(300))
    assert busy.returncode != 0 and busy.errors[0]["failure_type"] == "transient_error"
    assert "Another sync holds the change-detection snapshot" in busy.errors[0]["message"]
    assert len(sandbox.items("users")) == 300, "the refused sync sent something"
    s3.client().put_object(Bucket=bucket, Key=lock, Body=json.dumps({"owner": "killed", "renewed": 1.0}))
    taken = run_connector("write", config, users(300))
    assert taken.returncode == 0, taken.stderr
    assert len(sandbox.items("users")) == 600, "a killed sync's snapshot may lag Heap: every property is sent again"
    assert any("did not end" in log for log in taken.logs)


def test_a_resync_whose_sendable_records_are_all_unchanged_is_not_a_mapping_that_maps_nothing(sandbox, tmp_path):
    config = local(sandbox, tmp_path, USERS)
    assert run_connector("write", config, users(200)).returncode == 0
    blank = [record(1_000 + seq, email="", plan="free", seats=1) for seq in range(20)]
    run = run_connector("write", config, [*users(200), *blank])
    assert run.returncode == 0, run.errors
    assert run.summary["records_unchanged"] == 200 and run.summary["records_unmappable"] == 20
