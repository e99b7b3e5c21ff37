"""Change detection: a snapshot of what Heap accepted, so that a re-sync sends only what changed.

The snapshot is one SQLite file. Per scope (an app, a stream and one mapping of it) it holds a digest
of each key Heap accepted: for the property APIs the key's last accepted properties, for track an
event's idempotency key, for identify an identity and user id pair. A property update is skipped
only when it equals the last one Heap accepted for its key and no update of that key is in flight:
before an update is sent its key is marked sent (committed before the request leaves), and an answer
records the update's digest only if no later update of the key was sent meanwhile. A sync killed at
any moment leaves every key whose fate is unknown marked, and the next sync sends it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from .config import ApiConfig, HeapConfig, LocalSnapshot, ObjectStorageSnapshot, S3Storage, config_error
from .mapping import HeapItem
from .messages import shown
from .rejected import StoreError, key_part, s3_client, s3_error, s3_errors, within_deadline
from .routing import Route

logger = logging.getLogger("airbyte")

FILE_NAME = "heap_snapshot.sqlite3"
LOCK_NAME = "heap_snapshot.lock"
FOLDER = "heap_change_detection"
"""The object store's folder for snapshots, beside the rejected records' sync folders."""
HEARTBEAT_SECONDS = 60.0
STALE_SECONDS = 300.0
"""A lock in the object store not renewed for this long was left by a sync that did not end: it is taken over."""
CACHE_KIB = 32 * 1024
"""SQLite's page cache: the snapshot is read from disk, never held whole in memory."""

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS scopes (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, "
    "fingerprint TEXT NOT NULL, generation INTEGER, compares INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS items (scope INTEGER NOT NULL, key BLOB NOT NULL, digest BLOB, "
    "pending INTEGER NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID",
)
"""`digest` is NULL while an update of the key is sent and not known accepted; `pending` is the position of the
record that last sent the key, so an earlier answer never overwrites a later send."""


def digest(data: bytes) -> bytes:
    """A 16-byte digest: two different keys or property sets share one with a chance of about 2^-128."""
    return hashlib.blake2b(data, digest_size=16).digest()


def key_digest(values: Iterable[str]) -> bytes:
    """The digest the snapshot keeps of a key: its fields' values (an identity; an identity and a user id)."""
    return digest("\x1f".join(values).encode())


class Snapshot:
    """One SQLite snapshot file, opened by one sync; every call comes from the sync's main thread."""

    def __init__(self, path: Path, where: str, writable: bool = True) -> None:
        self.where = where
        self.writable = writable
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a commit survives the process being killed
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        for statement in SCHEMA:
            self.db.execute(statement)
        self.db.commit()
        self.compares: set[int] = set()
        self.dirty = False
        self.find = self.db.cursor().execute

    def scope(
        self, name: str, fingerprint: str, generation: int | None, refresh: bool, compares: bool
    ) -> tuple[int, str | None]:
        """The id of a mapping's scope, and why it was emptied, if it was: its mapping or app changed, or a
        refresh of the stream raised its generation."""
        row = self.db.execute("SELECT id, fingerprint, generation FROM scopes WHERE name = ?", (name,)).fetchone()
        reason = None
        if row is None:
            scope = self.db.execute(
                "INSERT INTO scopes (name, fingerprint, generation, compares) VALUES (?, ?, ?, ?)",
                (name, fingerprint, generation, compares),
            ).lastrowid
        else:
            scope, known, last = row
            if known != fingerprint:
                reason = "the mapping or app id changed since the last sync"
            elif refresh and generation is not None and (last is None or generation > last):
                reason = f"the stream was refreshed (generation {generation})"
            if reason is not None and self.writable:
                self.db.execute("DELETE FROM items WHERE scope = ?", (scope,))
            if self.writable:
                generation = last if generation is None else max(generation, last if last is not None else generation)
                self.db.execute(
                    "UPDATE scopes SET fingerprint = ?, generation = ? WHERE id = ?", (fingerprint, generation, scope)
                )
        if self.writable:
            self.db.commit()
        if compares:
            self.compares.add(scope)  # type: ignore[arg-type]
        return scope, reason  # type: ignore[return-value]

    def known(self, scope: int) -> int:
        """How many keys of a scope the snapshot holds."""
        return self.db.execute("SELECT count(*) FROM items WHERE scope = ?", (scope,)).fetchone()[0]

    def unchanged(self, scope: int, key: bytes, value: bytes, position: int) -> bool:
        """Whether Heap already holds this update (a property set) or item (an event, a link); when it does
        not, marks its key sent by the record at `position`, to be committed before the request leaves."""
        row = self.find("SELECT digest FROM items WHERE scope = ? AND key = ?", (scope, key)).fetchone()
        if scope in self.compares:
            if row is not None and row[0] == value:
                return True
            if self.writable:
                self.db.execute(
                    "INSERT INTO items VALUES (?, ?, NULL, ?) "
                    "ON CONFLICT (scope, key) DO UPDATE SET digest = NULL, pending = excluded.pending",
                    (scope, key, position),
                )
                self.dirty = True
            return False
        return row is not None and row[0] is not None

    def accepted(self, changes: Iterable[tuple[tuple[int, bytes, bytes], int]]) -> None:
        """Records what Heap accepted: each item's (scope, key, digest) and the position of its last record."""
        if not self.writable:
            return
        updates, inserts = [], []
        for (scope, key, value), position in changes:
            if scope in self.compares:
                updates.append((value, scope, key, position))
            else:
                inserts.append((scope, key, value))
        if updates:
            self.db.executemany("UPDATE items SET digest = ? WHERE scope = ? AND key = ? AND pending = ?", updates)
        if inserts:
            self.db.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?, 0)", inserts)
        self.dirty = self.dirty or bool(updates or inserts)

    def commit(self) -> None:
        """Makes what was marked and accepted durable (before a request leaves, for what it marked)."""
        if self.dirty:
            self.db.commit()
            self.dirty = False

    def forget_properties(self) -> None:
        """Forgets every property digest (a sync that did not end may have sent any key since the copy was saved)."""
        self.db.execute("UPDATE items SET digest = NULL WHERE scope IN (SELECT id FROM scopes WHERE compares = 1)")
        self.db.commit()

    def forget_identities(self, identities: Iterable[str]) -> None:
        """Forgets the properties of users Heap deleted, in every user-properties scope, so that a user who comes
        back has every property sent again."""
        if not self.writable:
            return
        names = self.db.execute("SELECT id, name FROM scopes WHERE compares = 1").fetchall()
        scopes = [scope for scope, name in names if json.loads(name)[2] == "add_user_properties"]
        keys = [key_digest((identity,)) for identity in identities]
        self.db.executemany("DELETE FROM items WHERE scope = ? AND key = ?", [(s, k) for s in scopes for k in keys])
        self.dirty = True

    def close(self) -> None:
        """Commits and closes the file."""
        self.commit()
        if self.writable:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()


class Changes:
    """One mapping's view of the snapshot: the key and digest of each of its items, and whether Heap holds it."""

    __slots__ = ("compares", "fields", "scope", "snapshot")

    def __init__(self, snapshot: Snapshot, scope: int, api: ApiConfig) -> None:
        self.snapshot = snapshot
        self.scope = scope
        self.fields = api.snapshot_key
        self.compares = api.compares_properties

    def of(self, item: HeapItem) -> tuple[int, bytes, bytes]:
        """The item's scope, key digest and value digest (pure: whatever it raises is the record's reason)."""
        body: dict[str, Any] = item.body  # type: ignore[assignment]
        key = key_digest(body[name] for name in self.fields)
        return self.scope, key, digest(orjson.dumps(body["properties"])) if self.compares else b""

    def unchanged(self, item: HeapItem, change: tuple[int, bytes, bytes]) -> bool:
        """Whether the item may be skipped; else it carries its change, recorded once Heap accepts it."""
        if self.snapshot.unchanged(*change, item.position):
            return True
        item.change = change
        return False


def changes_for(snapshot: Snapshot, config: HeapConfig, route: Route) -> Changes:
    """A route's view of the snapshot, its scope emptied when what shapes its items changed (the app, Heap's
    URL, the mapping) or when a refresh raised the stream's generation; says what the snapshot knows."""
    stream = route.stream
    name = json.dumps([stream.stream.name, stream.stream.namespace, route.api.api_type, *route.event_scope])
    shape = json.dumps([config.app_id, config.url, route.api.model_dump(mode="json")], sort_keys=True, default=str)
    generation = stream.generation_id
    refresh = generation is not None and generation == stream.minimum_generation_id
    scope, reason = snapshot.scope(
        name, hashlib.sha256(shape.encode()).hexdigest(), generation, refresh, route.api.compares_properties
    )
    what = f"stream '{shown(route.label)}' to {route.api.api_type}"
    if reason is not None:
        logger.info("Change detection: %s starts from an empty snapshot: %s; every record is sent.", what, reason)
    else:
        logger.info(
            "Change detection: %s knows %d keys Heap accepted (%s); what Heap already holds is skipped.",
            what,
            snapshot.known(scope),
            snapshot.where,
        )
    return Changes(snapshot, scope, route.api)


class LocalFile:
    """The snapshot in a directory of the user's: one sync at a time holds its lock."""

    def __init__(self, setting: LocalSnapshot) -> None:
        self.folder = Path(setting.path)
        self.where = str(self.folder / FILE_NAME)
        self.lock: Any = None

    def open(self, writable: bool) -> Snapshot:
        """The snapshot, once this sync holds the folder's lock; a config error when the folder cannot be
        written, a transient one while another sync holds it."""
        writable_folder(self.folder)
        if writable:
            self.lock = open(self.folder / LOCK_NAME, "a+b")  # noqa: SIM115 (held until the sync ends)
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.lock.close()
                raise AirbyteTracedException(
                    message=f"Another sync is using the change-detection snapshot {self.where}: run one sync at a "
                    "time per snapshot folder (give each connection its own path).",
                    failure_type=FailureType.transient_error,
                ) from None
        return Snapshot(self.folder / FILE_NAME, self.where, writable)

    def close(self, snapshot: Snapshot) -> None:
        """Closes the snapshot and lets the next sync have it."""
        snapshot.close()
        if self.lock is not None:
            self.lock.close()


def writable_folder(folder: Path) -> None:
    """A config error unless the folder exists (or can be made) and a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".heap_check_"):
            pass
    except OSError as error:
        raise config_error(
            f"change_detection.path '{folder}' cannot be written ({error.strerror or type(error).__name__}): give a "
            "directory this process can write, on a volume that outlives the container"
        ) from None


class ObjectFile:
    """The snapshot in the rejected records' bucket: downloaded when a sync starts, uploaded when it ends, and
    guarded by a lock object that the sync renews while it runs."""

    def __init__(self, storage: S3Storage, app_id: str, deadline: float) -> None:
        self.storage = storage
        self.deadline = deadline
        self.bucket = storage.s3_bucket_name
        folder = "/".join(part for part in (storage.bucket_path, FOLDER, key_part(f"app_{app_id}")) if part)
        self.key = f"{folder}/{FILE_NAME}"
        self.lock_key = f"{folder}/{LOCK_NAME}"
        self.where = f"s3://{self.bucket}/{self.key}"
        self.owner = uuid.uuid4().hex
        self.client: Any = None
        self.work = ""
        self.stopped = threading.Event()
        self.held = False

    def open(self, writable: bool) -> Snapshot:
        """A working copy of the snapshot, once this sync holds the lock (a dry run reads it only)."""
        self.client = s3_client(self.storage)
        try:
            self.work = tempfile.mkdtemp(prefix="heap_snapshot_")
        except OSError as error:
            raise config_error(
                "change_detection 'object_storage' works on a copy of the snapshot in a temporary folder, and "
                f"none can be written ({error.strerror or type(error).__name__}): set TMPDIR to a writable folder"
            ) from None
        path = Path(self.work) / FILE_NAME
        recovered = False
        try:
            recovered = self._take_lock() if writable else False
            self._download(path)
        except BaseException:  # nothing is sent: the lock and the working copy go, and the error stands
            self._let_go()
            raise
        snapshot = Snapshot(path, self.where, writable)
        if recovered:
            logger.warning(
                "The last sync using %s did not end (its lock was not renewed for %ds): events and links it knew "
                "Heap accepted are still skipped, and every property update is sent again, as that sync may have "
                "sent any key after the snapshot was saved.",
                self.where,
                STALE_SECONDS,
            )
            snapshot.forget_properties()
        return snapshot

    def close(self, snapshot: Snapshot) -> None:
        """Closes the working copy, uploads it and lets the lock go (a dry run uploads nothing). When the upload
        fails the lock stays, so the next sync knows this one's snapshot was not saved."""
        snapshot.close()
        try:
            if self.held:
                self.stopped.set()
                path = str(Path(self.work) / FILE_NAME)
                self._call(lambda: self.client.upload_file(path, self.bucket, self.key), "a write", 10)
        except s3_errors() as error:
            shutil.rmtree(self.work, ignore_errors=True)
            raise self._failed("written", s3_error(error)) from None
        self._let_go()

    def _download(self, path: Path) -> None:
        """Fetches the snapshot into the working copy; none there yet is an empty snapshot."""
        try:
            self._call(lambda: self.client.download_file(self.bucket, self.key, str(path)), "a read")
        except s3_errors() as error:
            if s3_error(error) not in ("404", "NoSuchKey"):
                raise self._failed("read", s3_error(error)) from None

    def _let_go(self) -> None:
        """Releases the lock, if held, and removes the working copy."""
        self.stopped.set()
        shutil.rmtree(self.work, ignore_errors=True)
        if self.held:
            self.held = False
            try:
                self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self.lock_key), "a write")
            except s3_errors() as error:
                raise self._failed("written", s3_error(error)) from None

    def _take_lock(self) -> bool:
        """Takes the lock; True when it took over one a sync that did not end had left."""
        recovered = False
        for _ in range(2):
            try:
                self._put_lock(first=True)
                break
            except s3_errors() as error:
                if s3_error(error) != "PreconditionFailed":
                    raise self._failed("written", s3_error(error)) from None
            age = self._lock_age()
            if age is not None and age < STALE_SECONDS:
                raise AirbyteTracedException(
                    message=f"Another sync holds the change-detection snapshot {self.where} (its lock was renewed "
                    f"{age:.0f}s ago): run one sync at a time per bucket path and app id. A lock a killed sync left "
                    f"is taken over {STALE_SECONDS:.0f}s after it was last renewed.",
                    failure_type=FailureType.transient_error,
                )
            self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self.lock_key), "a write")
            recovered = True
        else:
            raise AirbyteTracedException(
                message=f"Another sync took the change-detection snapshot {self.where} as this one started.",
                failure_type=FailureType.transient_error,
            )
        self.held = True
        threading.Thread(target=self._renew, name="heap-snapshot-lock", daemon=True).start()
        return recovered

    def _put_lock(self, first: bool = False) -> None:
        body = orjson.dumps({"owner": self.owner, "renewed": time.time()})
        extra = {"IfNoneMatch": "*"} if first else {}
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=self.lock_key, Body=body, **extra), "a write")

    def _lock_age(self) -> float | None:
        """Seconds since the lock was last renewed, or None when it is gone or unreadable."""
        try:
            body = self._call(
                lambda: self.client.get_object(Bucket=self.bucket, Key=self.lock_key)["Body"].read(), "a read"
            )
            return time.time() - float(orjson.loads(body)["renewed"])
        except s3_errors():
            return None
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return STALE_SECONDS  # not a lock this connector wrote whole: taken over

    def _renew(self) -> None:
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                self._put_lock()
            except (StoreError, *s3_errors()):
                logger.warning("The change-detection snapshot's lock could not be renewed; trying again.")

    def _call(self, call: Any, what: str, factor: float = 1) -> Any:
        try:
            return within_deadline(call, self.deadline * factor, what)
        except StoreError:
            raise self._failed("reached", f"no answer within {self.deadline * factor:g}s") from None

    def _failed(self, verb: str, why: str) -> StoreError:
        return StoreError(
            message=f"The change-detection snapshot {self.where} cannot be {verb} ({why}): fix the bucket or its "
            "access and rerun the sync (the next sync sends whatever this one did not record as accepted).",
            failure_type=FailureType.system_error,
        )


def snapshot_file(config: HeapConfig) -> LocalFile | ObjectFile | None:
    """Where the config keeps its snapshot, if it detects changes."""
    setting = config.change_detection
    if isinstance(setting, LocalSnapshot):
        return LocalFile(setting)
    if isinstance(setting, ObjectStorageSnapshot):
        return ObjectFile(config.object_storage_config, config.app_id, config.request_timeout_seconds)  # type: ignore[arg-type]
    return None
