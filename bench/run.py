"""Benchmarks `main.py write` against the local Heap sandbox; prints a table and writes it as JSON.

Usage: python bench/run.py [--records 1000000] [--small 100000] [--repeat 3]

Modes, all on the same generated data (seed-like user events with nested fields, a STATE every
1,000 records):
  floor     the records parsed, mapped and serialised in a minimal in-process loop (orjson, no HTTP)
  cpu       the connector against a sandbox with no faults, latency or rate limit, which only counts
            what it receives (its per-item checks would make it the bottleneck on two cores)
  per-row   one request per record on a fresh connection, as the original connector did
  latency   the connector against a sandbox answering after 50 ms (per-row measured the same way)
  pacing    the sandbox enforcing a limit counted over sliding or fixed windows, the connector
            configured to that limit or to twice it (Heap allowing half of what it was told)
  properties add_user_properties with distinct users and the default config (no per-app ceiling),
            the sandbox counting Heap's 30 requests per 30 s per identity; small and large input
  throttled every request throttled, max_retry_seconds 15: how long until the sync fails
  early-429 the first request throttled (Retry-After 1) under a known limit: the share of the limit
            accepted in the third minute, once the one throttle should be forgotten
  quiet     three records and a STATE, then a source that stays open and silent: seconds until the
            STATE comes back
  identify  10,000 user id / identity pairs against a sandbox answering after 50 ms: one request a pair,
            many in flight
  rejected  CPU per record without rejections, with an S3 rejected-records store configured (moto's
            server on 127.0.0.1) and none rejected, and with every other record rejected and stored:
            a rejected record's cost is the third run's CPU less the second's per record sent
  nested    records shaped like a users table (nested objects, a user of its own per record) sent with
            `*` through track (event and timestamp columns, idempotency keys) and add_user_properties:
            CPU per record as the slope between 2,000 and 200,000 records (start-up apart), against a
            floor that parses, flattens and serialises the same records, measured in the same rounds
  changes   change detection with a local snapshot: 10,000 events at Heap's 15,000 a minute synced
            twice (first and unchanged re-sync wall time); 200 changed and 300 new of 20,000 users
            (what is sent); 300,000 users unpaced, first sync and unchanged re-sync, then that
            re-sync again over a snapshot of 10 million keys (time and peak RSS)
  rss       peak RSS of the connector for the small input and for the cpu mode's
  breakdown CPU of the connector's in-process steps per record, and of one POST with its client
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import hashlib
import http.client
import json
import os
import platform
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from destination_heap_analytics.batching import BatchBuilder, RequestBody  # noqa: E402
from destination_heap_analytics.client import HeapClient  # noqa: E402
from destination_heap_analytics.config import HeapConfig  # noqa: E402
from destination_heap_analytics.mapping import IdempotencyKey, mapper_for  # noqa: E402
from destination_heap_analytics.messages import read_lines  # noqa: E402
from integration_tests.heap_sandbox import Faults  # noqa: E402
from integration_tests.support import S3Server  # noqa: E402

API = {
    "api_type": "track",
    "event_column": "identities.connection",
    "identity_column": "email",
    "timestamp_column": "updated_at",
    "property_columns": "blocked,created_at,name,nickname,identities.provider,logins_count,plan",
}
PROPERTY_COLUMNS = API["property_columns"].split(",")
PROPERTIES_API = {
    "api_type": "add_user_properties",
    "identity_column": "email",
    "property_columns": API["property_columns"],
}
LATENCY = 0.05
UNLIMITED = 10**9


def generate(path: Path, count: int, seed: int = 1, distinct: bool = False, rejected_every: int = 0) -> None:
    """Writes `count` RECORD lines of seed-like user events, with a STATE after every 1,000; with
    `distinct` every record is of a user of its own; with `rejected_every`, every such record has no
    email (no identity), so it cannot be sent."""
    rng = random.Random(seed)
    names = ["Camden", "Alysha", "Jacinto", "Mara", "Theo", "Ines", "Rafael", "Noor", "Kenji", "Lola"]
    with path.open("wb") as out:
        for seq in range(count):
            user = seq if distinct else rng.randrange(50_000)
            social = user % 3 == 0
            stamp = datetime.fromtimestamp(1666325394 + seq, timezone.utc).isoformat(timespec="milliseconds")
            data = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "blocked": user % 17 == 0,
                "created_at": stamp,
                "email": f"user{user}@example.com",
                "email_verified": user % 2 == 0,
                "family_name": names[user % 10],
                "given_name": names[(user // 10) % 10],
                "identities": {
                    "user_id": f"{user:08x}-4b19-4e93-969e-c3a2e98fe82b",
                    "connection": "google-oauth2" if social else "Username-Password-Authentication",
                    "provider": "google-oauth2" if social else "auth0",
                    "isSocial": social,
                },
                "name": f"{names[user % 10]} {names[(user // 7) % 10]}",
                "nickname": names[user % 10][:3],
                "logins_count": rng.randrange(500),
                "plan": ["free", "pro", "enterprise"][user % 3],
                "tags": ["beta", "newsletter"] if user % 5 == 0 else [],
                "updated_at": stamp,
                "user_id": f"auth0|{user:08x}",
            }
            if rejected_every and seq % rejected_every == 0:
                del data["email"]
            record = {"type": "RECORD", "record": {"stream": "users", "data": data, "emitted_at": 1666325394622}}
            out.write(orjson.dumps(record) + b"\n")
            if (seq + 1) % 1000 == 0:
                state = {
                    "type": "STREAM",
                    "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"seq": seq}},
                }
                out.write(orjson.dumps({"type": "STATE", "state": state}) + b"\n")


CATALOG = {
    "streams": [
        {
            "stream": {"name": "users", "json_schema": {"type": "object"}, "supported_sync_modes": ["incremental"]},
            "sync_mode": "incremental",
            "destination_sync_mode": "append",
            "primary_key": [["event_id"]],
        }
    ]
}


def floor(path: Path) -> dict[str, Any]:
    """Parse, map and serialise every record in a minimal loop: what this machine allows.

    The loop builds the very item the connector sends (checked by `same_item`), idempotency key
    included, but hard-codes this benchmark's columns instead of resolving them.
    """
    loads, dumps, blake2b, sort = orjson.loads, orjson.dumps, hashlib.blake2b, orjson.OPT_SORT_KEYS
    started_cpu, started = time.process_time(), time.perf_counter()
    count = 0
    first = None
    with path.open("rb") as lines:
        for line in lines:
            message = loads(line)
            if message["type"] != "RECORD":
                continue
            data = message["record"]["data"]
            properties = {}
            for column in PROPERTY_COLUMNS:
                value = data["identities"]["provider"] if column == "identities.provider" else data.get(column)
                properties[column] = ("true" if value else "false") if type(value) is bool else value
            item = {
                "identity": data["email"],
                "event": data["identities"]["connection"],
                "timestamp": data["updated_at"],
                "properties": properties,
                "idempotency_key": blake2b(
                    dumps(["users", [data["event_id"]]], option=sort), digest_size=16
                ).hexdigest(),
            }
            dumps(item)
            first = first or (data, item)
            count += 1
    cpu = time.process_time() - started_cpu
    same_item(*first)
    return {
        "records": count,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu,
        "cpu_us_per_record": cpu / count * 1e6,
    }


def same_item(data: dict[str, Any], floor_item: dict[str, Any], api: dict[str, Any] = API) -> None:
    """Stops the benchmark if the floor's item differs from what the connector maps the record to."""
    config = HeapConfig.parse({"app_id": "11", "api": api})
    mapped = mapper_for(config.api, IdempotencyKey("users", key_paths=[["event_id"]])).map(data, 0, 1)
    if mapped.body != floor_item:
        raise SystemExit(f"the floor builds {floor_item}, the connector {mapped.body}")


@contextlib.contextmanager
def sandbox_process(faults: Faults) -> Iterator[str]:
    """The sandbox in a process of its own, so its work and memory stay out of the bench's; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = [sys.executable, str(ROOT / "integration_tests" / "heap_sandbox.py"), "--port", str(port)]
    for knob in dataclasses.fields(Faults):
        args += [f"--{knob.name.replace('_', '-')}", str(getattr(faults, knob.name))]
    process = subprocess.Popen(args, stdout=subprocess.PIPE)
    try:
        process.stdout.readline()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def wait_measured(pid: int) -> tuple[int, Any, float]:
    """Waits for a child; returns its exit code, its rusage, and its own peak RSS (VmHWM) in MB.

    ru_maxrss is no good for the peak here: Linux carries the forking parent's high-water mark
    into the child across exec, so it is read from /proc while the child runs.
    """
    peak = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), usage, peak / 1024
        with contextlib.suppress(FileNotFoundError, ProcessLookupError), open(f"/proc/{pid}/status") as lines:
            for line in lines:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        time.sleep(0.05)


def connector(
    path: Path, records: int, faults: Faults, must_succeed: bool = True, sandbox: str | None = None, **options: Any
) -> dict[str, Any]:
    """Runs `main.py write` on the file against a fresh sandbox (or the running one at `sandbox`, whose counts
    then include earlier runs'); measures wall time, CPU and peak RSS.

    The config is unpaced unless `options` say otherwise; an option given as None is left out.
    """
    running = contextlib.nullcontext(sandbox) if sandbox else sandbox_process(faults)
    with running as url, tempfile.TemporaryDirectory() as tmp:
        config = {"app_id": "11", "base_url": url, "api": API, "max_events_per_minute": UNLIMITED, **options}
        config = {key: value for key, value in config.items() if value is not None}
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        (Path(tmp) / "catalog.json").write_text(json.dumps(CATALOG))
        args = [sys.executable, str(ROOT / "main.py"), "write"]
        args += ["--config", f"{tmp}/config.json", "--catalog", f"{tmp}/catalog.json"]
        with path.open("rb") as stdin, tempfile.TemporaryFile() as stdout:
            started = time.perf_counter()
            process = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL)
            returncode, usage, peak = wait_measured(process.pid)
            seconds = time.perf_counter() - started
            stdout.seek(0)
            messages = [orjson.loads(line) for line in stdout]
        snapshot = requests.get(f"{url}/_sandbox/received", timeout=30).json()
    if must_succeed and returncode != 0:
        raise SystemExit(f"connector exited {returncode}: {[m for m in messages if m['type'] == 'TRACE']}")
    if must_succeed and snapshot["accepted_count"] != records:
        raise SystemExit(f"sandbox accepted {snapshot['accepted_count']} of {records} records")
    cpu = usage.ru_utime + usage.ru_stime
    requests_made = snapshot["requests"]
    return {
        "records": records,
        "seconds": seconds,
        "records_per_second": records / seconds,
        "cpu_seconds": cpu,
        "cpu_us_per_record": cpu / records * 1e6,
        "peak_rss_mb": peak,
        "requests": requests_made,
        "throttled_share": snapshot["statuses"].get("429", 0) / max(requests_made, 1),
        "states": sum(1 for m in messages if m["type"] == "STATE"),
        "returncode": returncode,
        "accepted_count": snapshot["accepted_count"],
        "accepted_requests": snapshot["accepted_requests"],
    }


def share_after_first_window(run: dict[str, Any], window: float, per_minute: int) -> float:
    """Items Heap accepted per second after the first window, as a share of its limit.

    Counted from the first window's end to the last accepted request, whose own items are left out.
    """
    accepted = run.pop("accepted_requests")
    start = accepted[0][0] + window
    late = [(at, items) for at, items in accepted if at >= start]
    return sum(items for _, items in late[:-1]) / (late[-1][0] - start) / (per_minute / 60)


PACING_CASES = [
    ("5 s sliding windows", 5.0, False, 60_000, 60_000, 60_000),
    ("60 s sliding windows", 60.0, False, 60_000, 60_000, 150_000),
    ("fixed 10 s windows", 10.0, True, 60_000, 60_000, 60_000),
    ("half the configured limit, 60 s sliding", 60.0, False, 30_000, 60_000, 120_000),
    ("half the configured limit, fixed 10 s", 10.0, True, 30_000, 60_000, 60_000),
    ("12,000 under Heap's documented 15,000, fixed 10 s", 10.0, True, 12_000, None, 30_000),
    ("12,000 under Heap's documented 15,000, 60 s sliding", 60.0, False, 12_000, None, 36_000),
]
"""name, window seconds, fixed, items a minute the sandbox enforces, items a minute configured (None: track's
documented 15,000), records."""


def pacing(path: Path, case: tuple[str, float, bool, int, int, int]) -> dict[str, Any]:
    """The connector against a sandbox enforcing a limit counted one way."""
    name, window, fixed, enforced, configured, records = case
    faults = Faults(rate_limit=int(enforced * window / 60), rate_window=window, rate_fixed=fixed, keep_items=False)
    run = connector(path, records, faults, max_events_per_minute=configured)
    run["case"] = name
    run["share_of_limit"] = share_after_first_window(run, window, enforced)
    return run


def pacing_cases() -> list[dict[str, Any]]:
    """Every pacing case, each on a file of its own size."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in PACING_CASES:
            print(f"pacing: {case[0]}", flush=True)
            path = Path(tmp) / f"records-{case[-1]}.jsonl"
            if not path.exists():
                generate(path, case[-1])
            runs.append(pacing(path, case))
    return runs


EARLY_429_LIMIT = 60_000
"""Items a minute the sandbox enforces (counted over 60 s sliding windows) and the connector is told."""


def early_429(path: Path, records: int) -> dict[str, Any]:
    """One 429 on the first request: how much of the limit is used in the third minute."""
    faults = Faults(throttle_first=1, retry_after=1.0, rate_limit=EARLY_429_LIMIT, rate_window=60.0, keep_items=False)
    run = connector(path, records, faults, max_events_per_minute=EARLY_429_LIMIT)
    accepted = run.pop("accepted_requests")
    third_minute = [items for at, items in accepted if 120.0 <= at < 180.0]
    run["third_minute_share"] = sum(third_minute) / EARLY_429_LIMIT
    return run


def quiet_source(records: int = 3, silence: float = 30.0) -> dict[str, Any]:
    """Seconds from a quiet source's STATE to its coming back, with no input after it."""
    with sandbox_process(Faults()) as url, tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp) / "quiet.jsonl", records)
        state = {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"seq": 2}}}
        lines = [
            *(Path(tmp) / "quiet.jsonl").read_bytes().splitlines(True),
            orjson.dumps({"type": "STATE", "state": state}) + b"\n",
        ]
        config = {"app_id": "11", "base_url": url, "api": API}
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        (Path(tmp) / "catalog.json").write_text(json.dumps(CATALOG))
        args = [sys.executable, str(ROOT / "main.py"), "write"]
        args += ["--config", f"{tmp}/config.json", "--catalog", f"{tmp}/catalog.json"]
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        process.stdin.write(b"".join(lines))
        process.stdin.flush()
        sent = time.perf_counter()
        back = None
        deadline = sent + silence
        while back is None and time.perf_counter() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            if orjson.loads(line)["type"] == "STATE":
                back = time.perf_counter() - sent
        process.stdin.close()
        process.wait(60)
    return {"records": records, "state_back_after_seconds": back, "silence_seconds": silence}


IDENTIFY_PAIRS = 10_000
IDENTIFY_API = {"api_type": "identify", "user_id_column": "heap_user_id", "identity_column": "email"}


def identify_pairs() -> dict[str, Any]:
    """Pairs per second through identify, one request each, against 50 ms answers."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        with path.open("wb") as out:
            for n in range(IDENTIFY_PAIRS):
                data = {"heap_user_id": 10**6 + n, "email": f"user{n}@example.com"}
                record = {"type": "RECORD", "record": {"stream": "users", "data": data, "emitted_at": 1666325394622}}
                out.write(orjson.dumps(record) + b"\n")
        faults = Faults(latency=LATENCY, keep_items=False)
        run = connector(path, IDENTIFY_PAIRS, faults, api=IDENTIFY_API, max_events_per_minute=None)
    run.pop("accepted_requests")
    return run


REJECTED_RECORDS = 200_000
REJECTED_EVERY = 2
"""Every other record rejected: enough of them that the run-to-run noise of a shared VM (about 1 s of
CPU) moves the cost of one by no more than 10 us."""


def rejected_cost() -> dict[str, Any]:
    """CPU per record of the good path with and without a rejected-records store, and of a rejected record."""
    quiet = Faults(keep_items=False, validate=False)
    with tempfile.TemporaryDirectory() as tmp, S3Server() as s3:
        s3.client().create_bucket(Bucket="bench")
        clean, some = Path(tmp) / "clean.jsonl", Path(tmp) / "some.jsonl"
        generate(clean, REJECTED_RECORDS)
        generate(some, REJECTED_RECORDS, rejected_every=REJECTED_EVERY)
        store = {"object_storage_config": s3.storage("bench")}
        least = {
            "no_store": (clean, {}),
            "store_none_rejected": (clean, store),
            "store_half_rejected": (some, store),
        }
        runs = {
            name: min(
                (connector(path, REJECTED_RECORDS, quiet, must_succeed=False, **options) for _ in range(3)),
                key=cpu_of,
            )
            for name, (path, options) in least.items()
        }
        stored = sum(body.count(b"\n") - 1 for body in s3.objects("bench").values())
    rejected = REJECTED_RECORDS // REJECTED_EVERY
    good = REJECTED_RECORDS - rejected
    for name, run in runs.items():
        expected = good if name == "store_half_rejected" else REJECTED_RECORDS
        if run["returncode"] != 0 or run["accepted_count"] != expected:
            raise SystemExit(f"rejected mode {name}: exit {run['returncode']}, {run['accepted_count']} accepted")
    store_us = runs["store_none_rejected"]["cpu_us_per_record"]
    extra_cpu = runs["store_half_rejected"]["cpu_seconds"] - store_us * good / 1e6
    return {
        "records": REJECTED_RECORDS,
        "rejected": rejected,
        "stored_rows": stored,
        "no_store_us_per_record": runs["no_store"]["cpu_us_per_record"],
        "store_us_per_record": store_us,
        "rejected_us_each": extra_cpu / rejected * 1e6,
    }


QUIET = Faults(keep_items=False, validate=False)
SNAPSHOT_KEYS = 10_000_000
"""Keys in the snapshot the large re-sync looks its users up in (its own, and random ones of the same scope)."""


def with_changes(source: Path, target: Path, keep: int, changed: set[int]) -> None:
    """Copies generated records (a user of its own each) of users below `keep`, with a new plan for `changed`."""
    with source.open("rb") as lines, target.open("wb") as out:
        for line in lines:
            message = orjson.loads(line)
            if message["type"] == "RECORD":
                data = message["record"]["data"]
                user = int(data["email"].removeprefix("user").split("@")[0])
                if user >= keep:
                    continue
                if user in changed:
                    data["plan"] = "changed"
                line = orjson.dumps(message) + b"\n"
            out.write(line)


def resynced(url: str, path: Path, records: int, snapshot: Path, sent: int, **options: Any) -> dict[str, Any]:
    """One sync with a local snapshot against the sandbox at `url` (one Heap for every sync of a snapshot: its
    URL is part of what the snapshot is of); exits unless it succeeded and Heap received exactly `sent` items."""
    change_detection = {"store": "local", "path": str(snapshot)}
    before = requests.get(f"{url}/_sandbox/received", timeout=30).json()["accepted_count"]
    run = connector(path, records, QUIET, False, url, change_detection=change_detection, **options)
    run["sent"] = run["accepted_count"] - before
    if run["returncode"] != 0 or run["sent"] != sent:
        raise SystemExit(f"changes: exit {run['returncode']}, {run['sent']} sent where {sent} should be")
    return run


def change_detection() -> dict[str, Any]:
    """What a re-sync costs with change detection: paced, partly changed, and over a snapshot of 10M keys."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(QUIET) as url:
        folder = Path(tmp)
        events = folder / "events.jsonl"
        generate(events, 10_000)
        paced = {"max_events_per_minute": 15_000}
        first = resynced(url, events, 10_000, folder / "events", 10_000, **paced)
        again = resynced(url, events, 10_000, folder / "events", 0, **paced)
        results["paced"] = {"first_seconds": first["seconds"], "resync_seconds": again["seconds"]}
        users = folder / "users.jsonl"
        generate(users, 20_000, distinct=True)
        changed = set(random.Random(5).sample(range(19_700), 200))
        before, after = folder / "before.jsonl", folder / "after.jsonl"
        with_changes(users, before, 19_700, set())
        with_changes(users, after, 20_000, changed)
        properties = {"api": PROPERTIES_API, "max_events_per_minute": None}
        resynced(url, before, 19_700, folder / "users", 19_700, **properties)
        changed_run = resynced(url, after, 20_000, folder / "users", 500, **properties)
        results["changed"] = {"records": 20_000, "sent": changed_run["sent"]}
        large = folder / "large.jsonl"
        generate(large, 300_000, distinct=True)
        first = resynced(url, large, 300_000, folder / "large", 300_000, **properties)
        again = resynced(url, large, 300_000, folder / "large", 0, **properties)
        db = sqlite3.connect(folder / "large" / "heap_snapshot.sqlite3")
        (scope,) = db.execute("SELECT id FROM scopes").fetchone()
        rng = random.Random(9)
        for _ in range((SNAPSHOT_KEYS - 300_000) // 100_000):
            rows = [(scope, rng.randbytes(16), rng.randbytes(16)) for _ in range(100_000)]
            db.executemany("INSERT INTO items VALUES (?, ?, ?, 0)", rows)
        db.commit()
        keys = db.execute("SELECT count(*) FROM items").fetchone()[0]
        db.close()
        over = resynced(url, large, 300_000, folder / "large", 0, **properties)
        results["large"] = {
            "records": 300_000,
            "first_seconds": first["seconds"],
            "resync_seconds": again["seconds"],
            "snapshot_keys": keys,
            "snapshot_mb": (folder / "large" / "heap_snapshot.sqlite3").stat().st_size / 1e6,
            "resync_over_snapshot_seconds": over["seconds"],
            "resync_over_snapshot_peak_rss_mb": over["peak_rss_mb"],
            "first_peak_rss_mb": first["peak_rss_mb"],
        }
    return results


NESTED_APIS = {
    "track": {
        "api_type": "track",
        "event_column": "identities.connection",
        "identity_column": "email",
        "timestamp_column": "updated_at",
        "property_columns": "*",
    },
    "add_user_properties": {"api_type": "add_user_properties", "identity_column": "email", "property_columns": "*"},
}
"""The nested-record shape: every column through `*`, nested objects flattened, a user of its own per record."""
NESTED_SIZES = (2_000, 200_000)
"""The small and large run whose CPU difference, over their records, is the CPU per record beyond start-up."""


def flattened(value: dict[str, Any], prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """The floor's flattening: nested objects to dotted keys, booleans as Heap's text, nulls left out."""
    for key, inner in value.items():
        name = prefix + key
        kind = type(inner)
        if kind is dict:
            flattened(inner, name + ".", out)
        elif kind is bool:
            out[name] = "true" if inner else "false"
        elif inner is not None:
            out[name] = inner
    return out


def nested_floor(path: Path, api_type: str) -> dict[str, Any]:
    """The nested shape's floor: each line parsed with orjson, its item built with nested objects flattened,
    and bulk bodies of 1000 serialised, in a minimal loop (checked to build the connector's items)."""
    started_cpu = time.process_time()
    count, first = nested_floor_loop(path, api_type)
    cpu = time.process_time() - started_cpu
    same_item(*first, NESTED_APIS[api_type])
    return {"records": count, "cpu_seconds": cpu, "cpu_us_per_record": cpu / count * 1e6}


def nested_floor_loop(path: Path, api_type: str) -> tuple[int, tuple[dict[str, Any], dict[str, Any]]]:
    """The floor's loop itself: the records it read, and the first record with the item built from it."""
    loads, dumps, blake2b, sort = orjson.loads, orjson.dumps, hashlib.blake2b, orjson.OPT_SORT_KEYS
    track = api_type == "track"
    field = "events" if track else "users"
    items: list[dict[str, Any]] = []
    count = 0
    first = None
    with path.open("rb") as lines:
        for line in lines:
            message = loads(line)
            if message["type"] != "RECORD":
                continue
            data = message["record"]["data"]
            properties = flattened(data, "", {})
            if track:
                del properties["identities.connection"], properties["updated_at"]
                item = {
                    "identity": data["email"],
                    "event": data["identities"]["connection"],
                    "timestamp": data["updated_at"][:23] + "Z",  # Heap's form of the shape's +00:00 times
                    "properties": properties,
                    "idempotency_key": blake2b(
                        dumps(["users", [data["event_id"]]], option=sort), digest_size=16
                    ).hexdigest(),
                }
            else:
                del properties["user_id"]  # Heap refuses it as a user property
                tags = properties.pop("tags")
                if tags:  # Heap documents no arrays for properties: joined as track stores them
                    properties["tags"] = "||".join(tags)
                item = {"identity": data["email"], "properties": properties}
            items.append(item)
            if len(items) == 1000:
                dumps({"app_id": "11", field: items})
                items = []
            first = first or (data, item)
            count += 1
    if items:
        dumps({"app_id": "11", field: items})
    return count, first


def nested_cpu(rounds: int) -> dict[str, Any]:
    """CPU per record beyond start-up on the nested shape, for track and add_user_properties, against the
    floor. Each round measures, one after the other, the floor, the connector on the small input, on the
    large one and on the small one again, and the floor again, and takes the mean of each pair: a shared
    machine's drift in speed then moves the floor and the slope alike. The round with the median ratio
    is reported, with every round's ratio beside it."""
    quiet = Faults(keep_items=False, validate=False)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for size in NESTED_SIZES:
            files[size] = Path(tmp) / f"nested-{size}.jsonl"
            generate(files[size], size, distinct=True)
        small, large = NESTED_SIZES
        for api_type, api in NESTED_APIS.items():
            measured = []
            for _ in range(rounds):
                floors = [nested_floor(files[large], api_type)["cpu_us_per_record"]]
                cpu = {size: [connector(files[size], size, quiet, api=api)["cpu_seconds"]] for size in (small, large)}
                cpu[small].append(connector(files[small], small, quiet, api=api)["cpu_seconds"])
                floors.append(nested_floor(files[large], api_type)["cpu_us_per_record"])
                floor_us = sum(floors) / 2
                slope = (cpu[large][0] - sum(cpu[small]) / 2) / (large - small)
                measured.append(
                    {
                        "floor_us_per_record": floor_us,
                        "us_per_record": slope * 1e6,
                        "startup_cpu_seconds": sum(cpu[small]) / 2 - slope * small,
                        "ratio_to_floor": slope * 1e6 / floor_us,
                    }
                )
            measured.sort(key=lambda round_: round_["ratio_to_floor"])
            results[api_type] = {
                **measured[len(measured) // 2],
                "all_ratios": [round(round_["ratio_to_floor"], 2) for round_ in measured],
            }
    return results


def cpu_of(run: dict[str, Any]) -> float:
    """A run's CPU seconds, to keep the least disturbed of several."""
    return run["cpu_seconds"]


def per_row(path: Path, records: int, latency: float) -> dict[str, Any]:
    """One request per record on a fresh connection, as the original connector sent them."""
    with sandbox_process(Faults(latency=latency, keep_items=False)) as url, path.open("rb") as lines:
        started = time.perf_counter()
        sent = 0
        for line in lines:
            message = orjson.loads(line)
            if message["type"] != "RECORD":
                continue
            data = message["record"]["data"]
            body = {
                "app_id": "11",
                "identity": data["email"],
                "event": data["identities"]["connection"],
                "properties": {"name": data["name"]},
            }
            requests.post(f"{url}/api/track", json=body, timeout=30).raise_for_status()
            sent += 1
            if sent == records:
                break
        seconds = time.perf_counter() - started
    return {"records": sent, "seconds": seconds, "records_per_second": sent / seconds}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate, with every run's rate beside it."""
    ordered = sorted(runs, key=lambda run: run["records_per_second"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["all_records_per_second"] = [round(run["records_per_second"]) for run in runs]
    return chosen


def breakdown(path: Path, posts: int = 50) -> dict[str, Any]:
    """CPU per record of each in-process step of the connector, and per request of its HTTP client.

    The steps run one record at a time, as in the connector, each timed around its own call, after
    gc.freeze() as in the connector (else collections rescanning the CDK's import-time objects
    would be charged to whichever step triggers them).
    """
    gc.freeze()
    mapper = mapper_for(
        HeapConfig.parse({"app_id": "11", "api": API}).api, IdempotencyKey("users", key_paths=[["event_id"]])
    )
    body = RequestBody("11", "events")
    builder = BatchBuilder(body, 1_000_000, merge=False)
    clock = time.perf_counter_ns
    parse = mapping = batching = count = 0
    payload = b""
    with path.open("rb") as lines:
        messages = read_lines(lines)
        while True:
            started = clock()
            message = next(messages, None)
            parsed = clock()
            parse += parsed - started
            if message is None:
                break
            if type(message) is not tuple:
                continue
            item = mapper.map(message[1], message[2], count, message[3])
            mapped = clock()
            full = builder.add(item)
            batching += clock() - mapped
            mapping += mapped - parsed
            count += 1
            payload = payload or (body(full) if full is not None else b"")
    steps: dict[str, Any] = {
        "parse_us": parse / count / 1000,
        "map_us": mapping / count / 1000,
        "encode_and_batch_us": batching / count / 1000,
    }
    with sandbox_process(Faults(keep_items=False, validate=False)) as url:
        client = HeapClient(f"{url}/api/track")
        started_cpu = time.thread_time()
        for _ in range(posts):
            client.post(payload)
        steps["client_post_ms"] = (time.thread_time() - started_cpu) / posts * 1000
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        started_cpu = time.thread_time()
        for _ in range(posts):
            connection.request("POST", "/api/track", body=payload, headers={"Content-Type": "application/json"})
            connection.getresponse().read()
        steps["http_client_post_ms"] = (time.thread_time() - started_cpu) / posts * 1000
    return steps


def startup() -> dict[str, Any]:
    """CPU and peak RSS of `main.py --help`: the fixed cost of starting the CDK-based process (`spec` is answered
    without the CDK)."""
    process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--help"], stdout=subprocess.DEVNULL)
    _, usage, peak = wait_measured(process.pid)
    return {"cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak}


def main() -> None:
    """Runs every mode and reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records for the cpu and latency modes")
    parser.add_argument("--small", type=int, default=100_000, help="the smaller input of the rss comparison")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument(
        "--only",
        choices=["early-429", "quiet", "rejected", "identify", "nested", "pacing", "changes"],
        action="append",
        help="run only these modes, keeping the rest of --out",
    )
    args = parser.parse_args()
    if args.only:
        results = json.loads(Path(args.out).read_text())
        run_adaptive(results, args.only)
        report(results)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        return
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "records": args.records,
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for size in sorted({args.records, args.small}):
            files[size] = Path(tmp) / f"records-{size}.jsonl"
            generate(files[size], size)
        distinct = {}
        for size in (args.small, args.records):
            distinct[size] = Path(tmp) / f"distinct-{size}.jsonl"
            generate(distinct[size], size, distinct=True)
        main_file = files[args.records]
        quiet = Faults(keep_items=False, validate=False)
        print(f"floor: {args.records:,} records in-process", flush=True)
        results["floor"] = min((floor(main_file) for _ in range(args.repeat)), key=lambda run: run["cpu_seconds"])
        results["startup"] = startup()
        results["breakdown"] = breakdown(files[args.small])
        print("cpu: connector, no faults", flush=True)
        results["cpu"] = median_of([connector(main_file, args.records, quiet) for _ in range(args.repeat)])
        results["small"] = connector(files[args.small], args.small, quiet)
        print("per-row: one request per record, fresh connections", flush=True)
        results["per_row"] = per_row(main_file, 2_000, 0.0)
        print(f"latency: connector, sandbox answering after {LATENCY * 1000:.0f} ms", flush=True)
        latency_faults = Faults(latency=LATENCY, keep_items=False)
        results["latency"] = median_of([connector(main_file, args.records, latency_faults) for _ in range(args.repeat)])
        results["per_row_latency"] = per_row(main_file, 100, LATENCY)
        print("properties: add_user_properties, distinct users, default config", flush=True)
        properties = {"api": PROPERTIES_API, "max_events_per_minute": None}
        documented = Faults(identity_limit=30, identity_window=30.0, keep_items=False, validate=False)
        results["properties"] = connector(distinct[args.small], args.small, documented, **properties)
        results["properties_large"] = connector(distinct[args.records], args.records, documented, **properties)
        print("throttled: every request throttled, max_retry_seconds 15", flush=True)
        throttled = Faults(throttle_rate=1.0, retry_after=1.0, keep_items=False)
        results["throttled"] = connector(
            files[args.small],
            args.small,
            throttled,
            must_succeed=False,
            max_events_per_minute=None,
            max_retry_seconds=15,
        )
    run_adaptive(results, ["pacing", "early-429", "quiet", "rejected", "identify", "nested", "changes"])
    report(results)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def run_adaptive(results: dict[str, Any], modes: list[str]) -> None:
    """The modes of how the connector adapts over time: an early throttle, and a source gone quiet."""
    if "pacing" in modes:
        results["pacing"] = pacing_cases()
    if "early-429" in modes:
        print("early-429: the first request throttled, 60,000 a minute enforced and configured", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "early.jsonl"
            generate(path, 200_000)
            results["early_429"] = early_429(path, 200_000)
    if "quiet" in modes:
        print("quiet: three records and a STATE, then silence", flush=True)
        results["quiet"] = quiet_source()
    if "identify" in modes:
        print(f"identify: {IDENTIFY_PAIRS:,} pairs, sandbox answering after {LATENCY * 1000:.0f} ms", flush=True)
        results["identify"] = identify_pairs()
    if "nested" in modes:
        print("nested: '*' on nested records, track and add_user_properties, small and large runs", flush=True)
        results["nested"] = nested_cpu(5)
    if "rejected" in modes:
        print("rejected: no store, a store and none rejected, a store and every other record rejected", flush=True)
        results["rejected"] = rejected_cost()
    if "changes" in modes:
        print("changes: re-syncs with a local snapshot, paced, partly changed, over 10M keys", flush=True)
        results["changes"] = change_detection()


def report(results: dict[str, Any]) -> None:
    """Prints the results as a Markdown table with the targets beside them."""
    floor_run, cpu, small, latency = results["floor"], results["cpu"], results["small"], results["latency"]
    steps = results["breakdown"]
    properties, large, throttled = results["properties"], results["properties_large"], results["throttled"]
    cpu_us, floor_us = cpu["cpu_us_per_record"], floor_run["cpu_us_per_record"]
    marginal_us = (cpu["cpu_seconds"] - small["cpu_seconds"]) / (cpu["records"] - small["records"]) * 1e6
    per_row_rate = results["per_row"]["records_per_second"]
    per_row_latency_rate = results["per_row_latency"]["records_per_second"]
    large_rss = cpu["peak_rss_mb"]
    rss_growth = large_rss / small["peak_rss_mb"] - 1
    rows = [
        ("cpu: records/s end to end", f"{cpu['records_per_second']:,.0f}", ">= 50,000"),
        (
            "cpu: CPU per record, connector / floor",
            f"{cpu_us:.1f} us / {floor_us:.1f} us = {cpu_us / floor_us:.2f}x",
            "<= 2.5x",
        ),
        ("cpu: of which per record beyond startup", f"{marginal_us:.1f} us ({marginal_us / floor_us:.2f}x floor)", ""),
        ("cpu: startup (`main.py --help`)", f"{results['startup']['cpu_seconds']:.2f} s CPU", ""),
        (
            "cpu: in-process steps per record",
            f"parse {steps['parse_us']:.1f} us, map {steps['map_us']:.1f} us, "
            f"encode+batch {steps['encode_and_batch_us']:.1f} us",
            "",
        ),
        (
            "cpu: one 1000-item POST",
            f"client {steps['client_post_ms']:.2f} ms, bare http.client {steps['http_client_post_ms']:.2f} ms",
            "",
        ),
        ("cpu: requests", f"{cpu['requests']:,} for {cpu['records']:,} records", "records / 1000"),
        (
            "per-row: records/s, no latency",
            f"{per_row_rate:,.0f} (connector: {cpu['records_per_second'] / per_row_rate:,.0f}x)",
            "",
        ),
        ("latency 50 ms: records/s", f"{latency['records_per_second']:,.0f}", ">= 10,000"),
        (
            "latency 50 ms: connector / per-row",
            f"{latency['records_per_second'] / per_row_latency_rate:,.0f}x",
            ">= 200x",
        ),
        *pacing_rows(results["pacing"]),
        (
            f"properties: records/s, {properties['records']:,} distinct users, default config",
            f"{properties['records_per_second']:,.0f} ({properties['throttled_share']:.1%} throttled)",
            ">= 10,000",
        ),
        (
            "throttled: every request, max_retry_seconds 15",
            f"failed after {throttled['seconds']:.1f} s (exit {throttled['returncode']}), "
            f"{throttled['states']} STATE, {throttled['accepted_count']} accepted",
            "fails within 30 s, no STATE",
        ),
        *adaptive_rows(results),
        (
            f"rss: peak, distinct users, {properties['records']:,} / {large['records']:,} records",
            f"{properties['peak_rss_mb']:.0f} MB / {large['peak_rss_mb']:.0f} MB "
            f"({large['peak_rss_mb'] / properties['peak_rss_mb'] - 1:+.1%})",
            "<= 150 MB, within 10%",
        ),
        (
            f"rss: peak, {small['records']:,} / {cpu['records']:,} records",
            f"{small['peak_rss_mb']:.0f} MB / {large_rss:.0f} MB ({rss_growth:+.1%})",
            "<= 150 MB, within 10%",
        ),
    ]
    print(f"\n{results['date']}, {results['machine']}\n")
    print("| measure | result | target |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


def adaptive_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The early-429 and quiet-source rows, when those modes ran."""
    rows = []
    if "early_429" in results:
        early = results["early_429"]
        rows.append(
            (
                "early 429: share of the limit accepted in the third minute, requests throttled",
                f"{early['third_minute_share']:.1%}, {early['throttled_share']:.2%}",
                ">= 90% within 2 minutes",
            )
        )
    if "quiet" in results:
        back = results["quiet"]["state_back_after_seconds"]
        shown = f"{back:.1f} s" if back is not None else f"not within {results['quiet']['silence_seconds']:.0f} s"
        rows.append(("quiet source: 3 records and a STATE, then silence: STATE back after", shown, "<= 10 s"))
    if "identify" in results:
        pairs = results["identify"]
        rows.append(
            (
                f"identify, latency 50 ms: pairs/s, {pairs['records']:,} pairs",
                f"{pairs['records_per_second']:,.0f} ({pairs['requests']:,} requests, all linked)",
                ">= 500",
            )
        )
    for api_type, run in results.get("nested", {}).items():
        rows.append(
            (
                f"nested records, `*`, {api_type}: CPU per record beyond start-up / floor",
                f"{run['us_per_record']:.1f} us / {run['floor_us_per_record']:.1f} us = {run['ratio_to_floor']:.2f}x "
                f"(rounds: {', '.join(f'{ratio:.2f}x' for ratio in run['all_ratios'])}; "
                f"start-up {run['startup_cpu_seconds']:.2f} s)",
                "<= 2x",
            )
        )
    if "rejected" in results:
        cost = results["rejected"]
        rows.append(
            (
                f"rejected: CPU per record, {cost['records']:,} records, no store / S3 store, none rejected",
                f"{cost['no_store_us_per_record']:.1f} us / {cost['store_us_per_record']:.1f} us",
                "good path not slowed",
            )
        )
        rows.append(
            (
                "rejected: CPU per record rejected and stored (every other record)",
                f"{cost['rejected_us_each']:.1f} us ({cost['stored_rows']:,} rows stored over its three runs)",
                "",
            )
        )
    if "changes" in results:
        changes = results["changes"]
        paced, large = changes["paced"], changes["large"]
        rows += [
            (
                "changes: 10,000 events at 15,000/min, first sync / unchanged re-sync",
                f"{paced['first_seconds']:.1f} s / {paced['resync_seconds']:.1f} s "
                f"({paced['resync_seconds'] / paced['first_seconds']:.0%})",
                "re-sync <= 25%",
            ),
            (
                "changes: 200 changed + 300 new of 20,000 users: items sent",
                f"{changes['changed']['sent']:,}",
                "exactly 500",
            ),
            (
                f"changes: {large['records']:,} users unpaced, first sync / unchanged re-sync",
                f"{large['first_seconds']:.1f} s / {large['resync_seconds']:.1f} s",
                "re-sync no slower",
            ),
            (
                f"changes: that re-sync over a snapshot of {large['snapshot_keys']:,} keys "
                f"({large['snapshot_mb']:,.0f} MB): time, peak RSS",
                f"{large['resync_over_snapshot_seconds']:.1f} s, {large['resync_over_snapshot_peak_rss_mb']:.0f} MB",
                "<= 250 MB",
            ),
        ]
    return rows


def pacing_rows(runs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """One row per pacing case: the share of the limit used after the first window, and requests throttled."""
    rows = []
    for run in runs:
        half = run["case"].startswith("half")
        fixed = "fixed" in run["case"]
        below = "under Heap's documented" in run["case"]
        target = ">= 80%, <= 15%" if half else (">= 90%, <= 2%" if fixed or below else ">= 95%, <= 1%")
        rows.append(
            (
                f"pacing, {run['case']}: share of the limit, requests throttled",
                f"{run['share_of_limit']:.1%}, {run['throttled_share']:.1%}",
                target,
            )
        )
    return rows


if __name__ == "__main__":
    main()
