"""Keeps the records that do not reach Heap, each with its reason, in the user's own bucket."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from .config import S3Storage
from .messages import StreamKey

PART_BYTES = 8 * 1024 * 1024
"""A stream's rejected rows are written as one file once they reach this size, whatever comes next."""
WAITING_BYTES = 4 * PART_BYTES
"""Rows of every stream together wait at most this much in memory: past it, every stream's rows are written
(a catalog of many streams would otherwise hold a part of each)."""
WRITE_EVERY_SECONDS = 10.0
"""Rejected rows are written at most this often (each write is a request to S3); STATEs that cover them
wait meanwhile."""
RAW_CHARACTERS = 65_536
"""The most of a line kept when its record cannot be kept as an object."""
CONTEXT = (
    "_heap_rejected_reason",
    "_heap_rejected_field",
    "_heap_stream",
    "_heap_namespace",
    "_heap_position",
    "_heap_emitted_at",
    "_heap_changed",
    "_heap_raw",
)
"""The columns a stored row adds to the record's own: why it was rejected, where it came from, what had to
change for the row to be JSON, and the line itself when its record is not an object."""


class StoreError(AirbyteTracedException):
    """The rejected-records store cannot be written: the sync stops before a STATE covering its rows passes."""


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record that did not reach Heap: its stream, its place in the input, why, and what it held (its data, or
    the raw line when the data could not be read as an object)."""

    stream: StreamKey
    position: int
    reason: str
    field: str | None = None
    data: Any = None
    emitted_at: float | None = None
    raw: bytes | None = None

    def row(self) -> dict[str, Any]:
        """The record as a row of the store: its own columns at the top level, so the row loads back into the
        source's table as it came, then the `_heap_*` context; every value one JSON can hold."""
        changed: list[str] = []
        data = self.data
        row: dict[str, Any] = {}
        raw = None
        if type(data) is dict:
            try:
                row = json_safe(data, changed)
            except RecursionError:
                changed.append("record nested too deeply to store as columns: kept as its raw line")
                raw = self.raw
        else:
            raw = self.raw
        for column in CONTEXT:
            if column in row:
                row[f"_heap_record{column}"] = row.pop(column)
                changed.append(f"the record's column {column} stored as _heap_record{column}")
        text = None
        if raw is not None:
            text = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
            if len(text) > RAW_CHARACTERS:
                text = text[:RAW_CHARACTERS]
                changed.append(f"raw line cut to {RAW_CHARACTERS} characters")
        name, namespace = self.stream
        row.update(
            {
                "_heap_rejected_reason": self.reason,
                "_heap_rejected_field": self.field,
                "_heap_stream": name,
                "_heap_namespace": namespace,
                "_heap_position": self.position,
                "_heap_emitted_at": self.emitted_at,
                "_heap_changed": changed or None,
                "_heap_raw": text,
            }
        )
        return row


def json_safe(data: dict[str, Any], changed: list[str]) -> dict[str, Any]:
    """A copy of a record that every JSON reader takes (RFC 8259): NaN and the infinities (1e400 reads as one)
    as text, integers too long for Python's text conversion as text, lone surrogates replaced; each change
    named in `changed` by its path. Raises RecursionError for a record nested too deeply to copy."""

    def value_of(value: Any, path: str) -> Any:
        kind = type(value)
        if kind is dict:
            return {
                _text(key, path, changed): value_of(inner, f"{path}.{key}" if path else key)
                for key, inner in value.items()
            }
        if kind is list:
            return [value_of(inner, f"{path}[{index}]") for index, inner in enumerate(value)]
        if kind is float and not math.isfinite(value):
            changed.append(f"{path}: {value!r} is no JSON number, stored as text")
            return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
        if kind is str:
            return _text(value, path, changed)
        if kind is not int and isinstance(value, str):  # an integer too long to read as a number
            changed.append(f"{path}: an integer of more than 4300 digits, stored as text")
            return str(value)
        return value

    return value_of(data, "")


def _text(text: str, path: str, changed: list[str]) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        changed.append(f"{path or 'a key'}: a lone UTF-16 surrogate replaced")
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def stored_row(record: RejectedRecord) -> bytes:
    """A rejected record's row as JSON; a record too deep (or too odd) for a JSON writer is kept as its raw
    line instead, never an error: no single record may stop a sync."""
    try:
        return _encoded(record.row())
    except (RecursionError, ValueError):
        row = replace(record, data=None).row()
        row["_heap_changed"] = [*(row["_heap_changed"] or ()), "record too deep to write as JSON: kept as its raw line"]
        return _encoded(row)


def _encoded(row: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(row)
    except TypeError:  # an integer beyond 64 bits, or nesting deeper than orjson writes
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()


def jsonl(rows: list[bytes]) -> bytes:
    """Rows as JSON lines."""
    return b"".join(row + b"\n" for row in rows)


def csv_rows(rows: list[bytes]) -> bytes:
    """Rows as CSV: a header of every column of the file's rows, the record's first, then the `_heap_*` ones;
    texts as they are, other values (numbers, objects, arrays) as their JSON, nulls empty."""
    decoded = [json.loads(row) for row in rows]
    columns = [column for column in dict.fromkeys(key for row in decoded for key in row) if column not in CONTEXT]
    columns += CONTEXT
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in decoded:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return out.getvalue().encode("utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


FORMATS: dict[str, tuple[str, Callable[[list[bytes]], bytes]]] = {
    "JSONL": (".jsonl", jsonl),
    "CSV": (".csv", csv_rows),
}


def object_key(storage: S3Storage, sync_id: str, stream: StreamKey, part: int, now: datetime) -> str:
    """Where a file of rejected records goes: `bucket_path`, then `path_format` and `file_name_format` with their
    variables filled in (names percent-encoded, empty folders left out), as Airbyte's object storage writes."""
    name, namespace = stream
    folders = {
        "SYNC_ID": key_part(sync_id),
        "NAMESPACE": key_part(namespace) if namespace else "",
        "STREAM_NAME": key_part(name),
        "YEAR": f"{now:%Y}",
        "MONTH": f"{now:%m}",
        "DAY": f"{now:%d}",
        "HOUR": f"{now:%H}",
        "MINUTE": f"{now:%M}",
        "SECOND": f"{now:%S}",
        "EPOCH": str(int(now.timestamp())),
    }
    path = re.sub(r"\$\{(\w+)\}", lambda match: folders[match[1]], storage.path_format)
    extension = FORMATS[storage.format.format_type][0]
    if storage.compression.compression_type == "GZIP":
        extension += ".gz"
    names = {
        "date": f"{now:%Y_%m_%d}",
        "timestamp": str(int(now.timestamp() * 1000)),
        "part_number": str(part),
        "sync_id": key_part(sync_id),
        "format_extension": extension,
    }
    file_name = re.sub(r"\{(\w+)\}", lambda match: names[match[1]], storage.file_name_format)
    return "/".join(segment for segment in (*storage.bucket_path.split("/"), *path.split("/"), file_name) if segment)


def store_location(storage: S3Storage, sync_id: str) -> str:
    """The folder every file of a sync's rejected records is under, as people read it: `s3://bucket/path`."""
    fixed = storage.path_format.replace("${SYNC_ID}", key_part(sync_id)).split("${", 1)[0]
    folder = "/".join(part for part in (*storage.bucket_path.split("/"), *fixed.split("/")) if part)
    return f"s3://{storage.s3_bucket_name}/{folder}".rstrip("/")


def key_part(name: str) -> str:
    """A stream or namespace name as one segment of an object key: `%`, `/` and `\\` percent-encoded, then a
    lone surrogate written as its escape, so two names never share a folder."""
    text = name.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    return text.encode("utf-8", "backslashreplace").decode() or "%00"


def within_deadline(call: Callable[[], Any], seconds: float, what: str) -> Any:
    """The result of a call to the store, or a StoreError once it has taken `seconds`: the call may hang in a
    socket read that each read's timeout restarts, so it runs on a thread of its own, left behind if it
    never returns (a daemon: it does not keep the process alive)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # handed to the caller's thread, which raises it
            outcome.append((False, error))

    thread = threading.Thread(target=run, name="heap-store", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        raise StoreError(
            message=f"The rejected-records store did not answer {what} within {seconds:g}s.",
            failure_type=FailureType.system_error,
        )
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class NoStore:
    """Rejected records are counted, not kept."""

    where: str | None = None
    stored = 0

    def add(self, record: RejectedRecord) -> None:
        """Takes a rejected record (and lets it go)."""

    def flush(self) -> None:
        """Writes what waits: nothing."""

    @property
    def pending(self) -> bool:
        """Whether rejected records wait to be written."""
        return False

    def due(self) -> bool:
        """Whether what waits should be written now."""
        return True


class S3Store:
    """Writes rejected records to `{bucket_path}/{sync_id}/{namespace}/{stream}/` (by default) in files of many
    records.

    Records wait in memory per stream until `flush` (before any STATE that may cover them passes)
    or until a stream's rows reach PART_BYTES; a write that fails is a system error naming the store,
    so no STATE covering an unstored record ever passes.
    """

    def __init__(self, storage: S3Storage, sync_id: str, deadline: float, client: Any = None) -> None:
        self.storage = storage
        self.deadline = deadline
        """The most one call may take, retries included (request_timeout_seconds, as for Heap's requests): a
        store that stops answering, or answers a byte at a time, fails the sync instead of holding it."""
        self.bucket = storage.s3_bucket_name
        self.sync_id = sync_id
        self.where = store_location(storage, sync_id)
        self.encode = FORMATS[storage.format.format_type][1]
        self.compressed = storage.compression.compression_type == "GZIP"
        self.client = client or s3_client(storage)
        self.waiting: dict[StreamKey, list[bytes]] = {}
        self.waiting_bytes: dict[StreamKey, int] = {}
        self.total_waiting = 0
        self.parts = 0
        self.stored = 0
        self.waiting_since = 0.0

    def add(self, record: RejectedRecord) -> None:
        """Takes a rejected record; writes its stream's rows once they are large enough for a file, and every
        stream's once all of them together are."""
        if not self.waiting:
            self.waiting_since = time.monotonic()
        row = stored_row(record)
        self.waiting.setdefault(record.stream, []).append(row)
        size = self.waiting_bytes.get(record.stream, 0) + len(row)
        self.waiting_bytes[record.stream] = size
        self.total_waiting += len(row)
        if size >= PART_BYTES:
            self._write(record.stream)
        elif self.total_waiting >= WAITING_BYTES:
            self.flush()

    def flush(self) -> None:
        """Writes every stream's waiting rows."""
        for stream in list(self.waiting):
            self._write(stream)

    @property
    def pending(self) -> bool:
        """Whether rejected records wait to be written."""
        return bool(self.waiting)

    def due(self) -> bool:
        """Whether the records waiting have waited WRITE_EVERY_SECONDS, so they are written now."""
        return time.monotonic() - self.waiting_since >= WRITE_EVERY_SECONDS

    def _write(self, stream: StreamKey) -> None:
        """Writes a stream's waiting rows as one object, whole, or fails the sync naming the store."""
        rows = self.waiting[stream]
        self.parts += 1
        key = object_key(self.storage, self.sync_id, stream, self.parts, datetime.now(timezone.utc))
        body = gzip.compress(self.encode(rows), mtime=0) if self.compressed else self.encode(rows)
        try:
            within_deadline(
                lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=body),
                self.deadline,
                "a write",
            )
        except StoreError as error:
            raise self._unwritable(error.message or "no answer") from None
        except s3_errors() as error:
            raise self._unwritable(s3_error(error)) from None
        del self.waiting[stream]
        self.total_waiting -= self.waiting_bytes.pop(stream, 0)
        self.stored += len(rows)

    def _unwritable(self, why: str) -> StoreError:
        return StoreError(
            message=(
                f"The rejected-records store {self.where} cannot be written ({why}): no checkpoint covering its "
                "records was passed; fix the bucket or its access and rerun the sync."
            ),
            failure_type=FailureType.system_error,
        )


def s3_client(storage: S3Storage) -> Any:
    """A boto3 S3 client for the store: path-style addressing for an S3-compatible endpoint, bounded retries.

    boto3 is imported here, not at the top: a sync without a store does not pay for its import.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=10,
        read_timeout=60,
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"} if storage.s3_endpoint else {},
    )
    return boto3.client(
        "s3",
        region_name=storage.s3_bucket_region or None,
        endpoint_url=storage.s3_endpoint,
        aws_access_key_id=storage.access_key_id,
        aws_secret_access_key=storage.secret_access_key,
        config=config,
    )


def s3_errors() -> tuple[type[BaseException], ...]:
    """What the S3 client raises when a call fails (looked up only when something was raised)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def s3_error(error: BaseException) -> str:
    """What S3 said, as its error code (never a message, which may quote a key or credential)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "unknown error"))[:60]
    return type(error).__name__


def check_store(storage: S3Storage, deadline: float) -> str | None:
    """Proves the bucket works: writes a small object, reads it back, deletes it; what failed, or None."""
    client = s3_client(storage)
    bucket = storage.s3_bucket_name
    key = "/".join(part for part in (storage.bucket_path, f"_airbyte_check_{uuid.uuid4().hex}") if part)
    content = uuid.uuid4().hex.encode()
    step = "writing a test object to"
    try:
        within_deadline(lambda: client.put_object(Bucket=bucket, Key=key, Body=content), deadline, "")
        step = "reading a test object back from"
        read = within_deadline(lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read(), deadline, "")
        if read != content:
            return f"The rejected-records store {storage.where}: the test object read back differs from the one written"
        step = "deleting a test object from"
        within_deadline(lambda: client.delete_object(Bucket=bucket, Key=key), deadline, "")
    except StoreError:
        return f"The rejected-records store did not answer within {deadline:g}s when {step} bucket '{bucket}'"
    except s3_errors() as error:
        return f"The rejected-records store failed when {step} bucket '{bucket}': {s3_error(error)}"
    return None


def store_for(storage: Any, sync_id: str | None, deadline: float) -> NoStore | S3Store:
    """The store a config asks for; the sync id names the sync's folder (a time-based one when the catalog
    has none)."""
    if not isinstance(storage, S3Storage):
        return NoStore()
    return S3Store(storage, sync_id or f"sync-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}", deadline)
