"""What the tests share: configs, catalogs, RECORD and STATE builders (plain and as the platform sends
them), the check that each STATE came only after the records it covers were accepted, and the one way
of running `main.py` as a real subprocess."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integration_tests.forked import start
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
    seconds: float = 0.0  # from the process's first line out to its end: its work, not its start (a loaded
    # machine takes seconds to start Python and import the CDK)

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


def catalog(
    *streams: str, primary_key: list[list[str]] | None = None, schema: dict | None = None, sync_id: int | None = None
) -> dict:
    """A configured catalog with the given streams (and the platform's sync id, when given)."""
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
                **({"sync_id": sync_id} if sync_id is not None else {}),
            }
            for name in (streams or ("users",))
        ]
    }


def config_for(
    sandbox: HeapSandbox, api: dict | None = None, mappings: list[dict] | None = None, **options: Any
) -> dict:
    """A config pointing at the sandbox, paced far above what a test sends unless the test says otherwise;
    with `mappings`, streams are mapped by name instead of the top-level api."""
    routing = {"mappings": mappings} if mappings is not None else {"api": api or TRACK}
    return {"app_id": "11", "base_url": sandbox.url, **routing, "max_events_per_minute": 10**7, **options}


def run_connector(
    command: str,
    config: dict | None = None,
    messages: Iterable[dict | bytes] = (),
    catalog_json: dict | None = None,
    on_message: Callable[[dict], None] | None = None,
    timeout: float = 300,
    extra_args: list[str] | None = None,
) -> Run:
    """Runs `main.py <command>` as a process of its own (`forked.start`), feeding messages (bytes as they are)
    on stdin; calls on_message as each line arrives."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [command]
        if config is not None:
            (Path(tmp) / "config.json").write_text(json.dumps(config))
            args += ["--config", str(Path(tmp) / "config.json")]
        if command == "write":
            (Path(tmp) / "catalog.json").write_text(json.dumps(catalog_json or catalog()))
            args += ["--catalog", str(Path(tmp) / "catalog.json")]
        args += extra_args or []
        process = start(args)

        def feed() -> None:
            try:
                for message in messages:
                    line = message if isinstance(message, bytes) else json.dumps(message).encode()
                    process.stdin.write(line + b"\n")
                    process.stdin.flush()
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
        first_line_at = None
        try:
            for line in process.stdout:
                first_line_at = first_line_at or time.monotonic()
                lines.append(line.decode())
                message = json.loads(line)
                parsed.append(message)
                if on_message is not None:
                    on_message(message)
            process.wait()
            ended_at = time.monotonic()
        finally:
            timer.cancel()
            process.kill()
        drain.join(5)
        seconds = ended_at - (first_line_at or ended_at)
        return Run(process.returncode, parsed, b"".join(stderr_lines).decode(), "".join(lines), seconds)


def platform_state(state_id: Any, name: str = "users", namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    """A STREAM state as the Airbyte platform sends it: its `id`, sourceStats, and fields a newer protocol adds."""
    descriptor = {"name": name, **({"namespace": namespace} if namespace else {})}
    body = {
        "type": "STREAM",
        "id": state_id,
        "stream": {"stream_descriptor": descriptor, "stream_state": {"cursor": state_id, "big": 2**70}},
        "sourceStats": {"recordCount": 5.0},
        "x_future_field": {"nested": [1, "two", None]},
        **extra,
    }
    return {"type": "STATE", "state": body, "x_top_level": True}


def global_state(state_id: Any) -> dict[str, Any]:
    """A GLOBAL state as the platform sends it."""
    shared = {"lsn": 123456789012345678901234567890}
    streams = [{"stream_descriptor": {"name": "users"}, "stream_state": {"c": 1}}]
    body = {"type": "GLOBAL", "id": state_id, "global": {"shared_state": shared, "stream_states": streams}}
    return {"type": "STATE", "state": {**body, "sourceStats": {"recordCount": 2.0}, "x_new": "kept"}}


def legacy_state(state_id: Any) -> dict[str, Any]:
    """A LEGACY state as the platform sends it."""
    return {"type": "STATE", "state": {"type": "LEGACY", "id": state_id, "data": {"users": {"cursor": "2024"}}}}


def in_namespace(seq: int, name: str = "users", namespace: str | None = None) -> dict[str, Any]:
    """A RECORD of a stream in a namespace (none: without one)."""
    message = record(seq, stream=name)
    if namespace:
        message["record"]["namespace"] = namespace
    return message


class StateCoverage:
    """Checks, as each STATE line arrives, that every record it covers is already in the sandbox.

    Records carry `seq`; a STATE built by `state` covers its stream's records up to its seq. Pass
    `on_message` to run_connector; `missing` lists, per STATE, the covered records Heap lacked then
    (records in `rejected` are allowed to be absent).
    """

    def __init__(self, sandbox: HeapSandbox, field: str = "events", rejected: frozenset[int] = frozenset()) -> None:
        self.sandbox = sandbox
        self.field = field
        self.rejected = rejected
        self.checked: list[tuple[int, list[int]]] = []

    def on_message(self, message: dict[str, Any]) -> None:
        """Looks at one output message."""
        if message["type"] == "STATE":
            covered = message["state"]["stream"]["stream_state"]["seq"]
            accepted = {item["properties"]["seq"] for item in self.sandbox.items(self.field)}
            missing = [seq for seq in range(covered + 1) if seq not in accepted and seq not in self.rejected]
            self.checked.append((covered, missing))

    @property
    def covered(self) -> list[int]:
        """The seq each STATE covered, in order."""
        return [covered for covered, _ in self.checked]

    @property
    def early(self) -> list[tuple[int, list[int]]]:
        """The STATEs that came before some record they cover was accepted."""
        return [(covered, missing) for covered, missing in self.checked if missing]


class S3Server:
    """An S3-compatible server on 127.0.0.1 (moto's standalone server) for the rejected-records store, started
    and stopped by the tests themselves; `client` talks to it as to S3."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> S3Server:
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("moto_server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def storage(self, bucket: str, **options: Any) -> dict[str, Any]:
        """An object_storage_config pointing at this server."""
        return {
            "storage_type": "S3",
            "s3_bucket_name": bucket,
            "s3_bucket_region": "us-east-1",
            "access_key_id": "test",
            "secret_access_key": "test",
            "s3_endpoint": self.url,
            **options,
        }

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in a bucket, by key."""
        client = self.client()
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def activation_stream(
    name: str,
    object_name: str,
    fields: list[str],
    sync_mode: str = "append",
    primary_key: list[str] | None = None,
    namespace: str | None = None,
    sync_id: int = 9001,
) -> dict[str, Any]:
    """A configured stream as the platform sends it after a user mapped it to a Heap object in the Airbyte UI:
    `stream.name` the source's, `destination_object_name` the object, the schema rebuilt from the mapped
    fields with additionalProperties, the matching key as primary_key, generation and sync ids."""
    schema = {"type": "object", "properties": {field: {"type": "string"} for field in fields}}
    return {
        "stream": {
            "name": name,
            **({"namespace": namespace} if namespace else {}),
            "json_schema": {**schema, "additionalProperties": True},
            "supported_sync_modes": ["full_refresh", "incremental"],
        },
        "sync_mode": "full_refresh",
        "destination_sync_mode": sync_mode,
        "destination_object_name": object_name,
        **({"primary_key": [[field] for field in primary_key]} if primary_key else {}),
        "generation_id": 3,
        "minimum_generation_id": 0,
        "sync_id": sync_id,
    }


class StoreProxy:
    """An S3 endpoint on 127.0.0.1 in front of a real S3-compatible server, faulty on request: it refuses
    (HTTP 500) object writes larger than `refuse_bodies_over` bytes, or answers every request one byte a
    second (`trickle`), as a failing or choked store would; everything else is passed on as it came."""

    def __init__(self, upstream: str, refuse_bodies_over: int = 0, trickle: bool = False) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _relay(self) -> None:
                import http.client

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.trickle:
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    for _ in range(1000):
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(1)
                    return
                if self.command == "PUT" and proxy.refuse_bodies_over and len(body) > proxy.refuse_bodies_over:
                    proxy.refused += 1
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                content = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
                connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self.refuse_bodies_over = refuse_bodies_over
        self.trickle = trickle
        self.refused = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StoreProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
