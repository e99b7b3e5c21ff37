"""Helpers that run `main.py` as a real subprocess against the local Heap sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from integration_tests.heap_sandbox import HeapSandbox

ROOT = Path(__file__).resolve().parent.parent
MAIN = str(ROOT / "main.py")
TRACK = {"api_type": "track", "event_column": "event", "identity_column": "email", "timestamp_column": "ts"}


@dataclass
class Run:
    """What one connector process did."""

    returncode: int
    messages: list[dict[str, Any]]
    stderr: str
    stdout: str = field(repr=False, default="")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["state"] for m in self.of_type("STATE")]

    @property
    def logs(self) -> list[str]:
        return [m["log"]["message"] for m in self.of_type("LOG")]

    @property
    def summary(self) -> dict[str, Any]:
        traces = [m["trace"]["analytics"] for m in self.of_type("TRACE") if m["trace"]["type"] == "ANALYTICS"]
        return json.loads(traces[-1]["value"])

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m["trace"]["error"] for m in self.of_type("TRACE") if m["trace"]["type"] == "ERROR"]


def record(seq: int, stream: str = "users", **data: Any) -> dict[str, Any]:
    """One RECORD message with a sequence number."""
    body = {"seq": seq, "email": f"user{seq % 977}@example.com", "event": "Signed Up", "ts": 1666325394000 + seq}
    body.update(data)
    return {"type": "RECORD", "record": {"stream": stream, "data": body, "emitted_at": 1666325394622}}


def state(seq: int, stream: str = "users") -> dict[str, Any]:
    """A per-stream STATE message covering records up to `seq`."""
    return {
        "type": "STATE",
        "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": stream}, "stream_state": {"seq": seq}}},
    }


def stream_messages(count: int, state_every: int = 1000, make: Callable[[int], dict] = record) -> list[dict]:
    """`count` records with a STATE after every `state_every` of them and at the end."""
    messages = []
    for seq in range(count):
        messages.append(make(seq))
        if (seq + 1) % state_every == 0 or seq + 1 == count:
            messages.append(state(seq))
    return messages


def catalog(*streams: str, primary_key: list[list[str]] | None = None, schema: dict | None = None) -> dict:
    """A configured catalog with the given streams."""
    return {
        "streams": [
            {
                "stream": {
                    "name": name,
                    "json_schema": schema or {"type": "object"},
                    "supported_sync_modes": ["full_refresh", "incremental"],
                },
                "sync_mode": "incremental",
                "destination_sync_mode": "append",
                **({"primary_key": primary_key} if primary_key else {}),
            }
            for name in (streams or ("users",))
        ]
    }


def config_for(sandbox: HeapSandbox, api: dict | None = None, **options: Any) -> dict:
    """A config pointing at the sandbox, paced far above what a test sends unless the test says otherwise."""
    return {"app_id": "11", "base_url": sandbox.url, "api": api or TRACK, "max_events_per_minute": 10**7, **options}


def run_connector(
    command: str,
    config: dict | None = None,
    messages: Iterable[dict | bytes] = (),
    catalog_json: dict | None = None,
    on_message: Callable[[dict], None] | None = None,
    timeout: float = 300,
    extra_args: list[str] | None = None,
) -> Run:
    """Runs `main.py <command>` as a subprocess, feeding messages (bytes as they are) on stdin; calls on_message
    as each line arrives."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, MAIN, command]
        if config is not None:
            (Path(tmp) / "config.json").write_text(json.dumps(config))
            args += ["--config", str(Path(tmp) / "config.json")]
        if command == "write":
            (Path(tmp) / "catalog.json").write_text(json.dumps(catalog_json or catalog()))
            args += ["--catalog", str(Path(tmp) / "catalog.json")]
        args += extra_args or []
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def feed() -> None:
            try:
                for message in messages:
                    line = message if isinstance(message, bytes) else json.dumps(message).encode()
                    process.stdin.write(line + b"\n")
                process.stdin.close()
            except BrokenPipeError:
                pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        stderr_lines: list[bytes] = []
        drain = threading.Thread(target=lambda: stderr_lines.extend(process.stderr), daemon=True)
        drain.start()
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        lines, parsed = [], []
        try:
            for line in process.stdout:
                lines.append(line.decode())
                message = json.loads(line)
                parsed.append(message)
                if on_message is not None:
                    on_message(message)
            process.wait()
        finally:
            timer.cancel()
            process.kill()
        drain.join(5)
        return Run(process.returncode, parsed, b"".join(stderr_lines).decode(), "".join(lines))


@pytest.fixture
def sandbox():
    with HeapSandbox() as running:
        yield running
