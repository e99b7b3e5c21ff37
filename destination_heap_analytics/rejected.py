"""Keeps the records that do not reach Heap, each with its reason, in the user's own bucket."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from .config import S3Storage
from .messages import StreamKey, dump_json

PART_BYTES = 8 * 1024 * 1024
"""A stream's rejected rows are written as one file once they reach this size, whatever comes next."""
WRITE_EVERY_SECONDS = 10.0
"""Rejected rows are written at most this often (each write is a request to S3); STATEs that cover them
wait meanwhile."""
COLUMNS = ("rejected_reason", "rejected_field", "position", "emitted_at", "data")


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record that did not reach Heap: its stream, its place in the input, why, and what it held."""

    stream: StreamKey
    position: int
    reason: str
    field: str | None = None
    data: Any = None
    emitted_at: float | None = None

    def row(self) -> dict[str, Any]:
        """The record as a row of the store: the reason first, then the record's data as it came."""
        return {
            "rejected_reason": self.reason,
            "rejected_field": self.field,
            "position": self.position,
            "emitted_at": self.emitted_at,
            "data": self.data,
        }


def jsonl(records: list[RejectedRecord]) -> bytes:
    """Rows as JSON lines, values exact (integers of any size included)."""
    return b"".join(dump_json(record.row()) + b"\n" for record in records)


def csv_rows(records: list[RejectedRecord]) -> bytes:
    """Rows as CSV with a header; `data` is the record's JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in records:
        row = record.row()
        row["data"] = dump_json(record.data).decode("utf-8", "backslashreplace")
        writer.writerow(["" if row[column] is None else row[column] for column in COLUMNS])
    return out.getvalue().encode("utf-8", "backslashreplace")


FORMATS: dict[str, tuple[str, Callable[[list[RejectedRecord]], bytes]]] = {
    "JSONL": ("jsonl", jsonl),
    "CSV": ("csv", csv_rows),
}


def key_part(name: str) -> str:
    """A stream or namespace name as one segment of an object key."""
    return name.encode("utf-8", "backslashreplace").decode().replace("/", "_") or "_"


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
    """Writes rejected records to `{bucket_path}/{sync_id}/{namespace}/{stream}/` in files of many records.

    Records wait in memory per stream until `flush` (before any STATE that may cover them passes)
    or until a stream's rows reach PART_BYTES; a write that fails is a system error naming the store,
    so no STATE covering an unstored record ever passes.
    """

    def __init__(self, storage: S3Storage, sync_id: str, client: Any = None) -> None:
        self.storage = storage
        self.bucket = storage.s3_bucket_name
        self.prefix = "/".join(part for part in (storage.bucket_path, key_part(sync_id)) if part)
        self.where = f"s3://{self.bucket}/{self.prefix}"
        self.extension, self.encode = FORMATS[storage.format]
        self.client = client or s3_client(storage)
        self.waiting: dict[StreamKey, list[RejectedRecord]] = {}
        self.waiting_bytes: dict[StreamKey, int] = {}
        self.parts = 0
        self.stored = 0
        self.waiting_since = 0.0

    def add(self, record: RejectedRecord) -> None:
        """Takes a rejected record; writes its stream's rows once they are large enough for a file."""
        if not self.waiting:
            self.waiting_since = time.monotonic()
        self.waiting.setdefault(record.stream, []).append(record)
        size = self.waiting_bytes.get(record.stream, 0) + len(dump_json(record.data)) + len(record.reason) + 64
        self.waiting_bytes[record.stream] = size
        if size >= PART_BYTES:
            self._write(record.stream)

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
        records = self.waiting.pop(stream)
        self.waiting_bytes.pop(stream, None)
        name, namespace = stream
        folder = "/".join([self.prefix, *([key_part(namespace)] if namespace else []), key_part(name)])
        self.parts += 1
        now = datetime.now(UTC)
        key = f"{folder}/{now:%Y_%m_%d}_{int(time.time() * 1000)}_{self.parts}.{self.extension}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=self.encode(records))
        except s3_errors() as error:
            raise AirbyteTracedException(
                message=(
                    f"The rejected-records store {self.where} cannot be written ({s3_error(error)}): no checkpoint "
                    "covering its records was passed; fix the bucket or its access and rerun the sync."
                ),
                failure_type=FailureType.system_error,
            ) from None
        self.stored += len(records)


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


def check_store(storage: S3Storage) -> str | None:
    """Proves the bucket works: writes a small object, lists it, deletes it; what failed, or None."""
    client = s3_client(storage)
    key = "/".join(part for part in (storage.bucket_path, f"_airbyte_check_{uuid.uuid4().hex}") if part)
    step = "writing a test object to"
    try:
        client.put_object(Bucket=storage.s3_bucket_name, Key=key, Body=b"check")
        step = "listing"
        listed = client.list_objects_v2(Bucket=storage.s3_bucket_name, Prefix=key)
        if not any(item.get("Key") == key for item in listed.get("Contents", [])):
            return f"The rejected-records store {storage.where}: the test object written there was not listed"
        step = "deleting a test object from"
        client.delete_object(Bucket=storage.s3_bucket_name, Key=key)
    except s3_errors() as error:
        return f"The rejected-records store failed when {step} bucket '{storage.s3_bucket_name}': {s3_error(error)}"
    return None


def store_for(storage: Any, sync_id: str | None) -> NoStore | S3Store:
    """The store a config asks for; the sync id names the sync's folder (a time-based one when the catalog
    has none)."""
    if not isinstance(storage, S3Storage):
        return NoStore()
    return S3Store(storage, sync_id or f"sync-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
