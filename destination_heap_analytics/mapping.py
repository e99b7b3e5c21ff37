"""Turns one source record into one Heap item, or into the reason it cannot be one."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .config import ApiConfig, IdentifyApi, TrackApi
from .messages import StreamKey
from .timestamps import heap_time, heap_time_of_epoch_ms

MAX_TEXT = 1023
MAX_EVENT = 1024
MAX_IDENTITY = 255
MAX_USER_ID = 2**53 - 1
INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1

MISSING = object()

TRUNCATED_VALUE = "property value cut to 1023 characters"
TRUNCATED_KEY = "property name cut to 1023 characters"
TRUNCATED_EVENT = "event name cut to 1024 characters"
REFUSED_NAME_LEFT_OUT = "property Heap refuses by name ('id', 'user_id') left out"
NAME_COLLISION = "two fields gave one property name, the first value kept"
GAVE_WAY = "a column of '*' left out: a named column is sent under its name"
TIMESTAMP_FROM_EMITTED_AT = "timestamp missing, the record's emitted_at used"
KEY_FROM_RECORD_HASH = "idempotency key column missing, key made from the record"
OTHER_STREAM = "record of a stream not in the catalog"
TOO_DEEP = "record nested too deeply"
NOT_UNICODE = "text holding a lone UTF-16 surrogate"
BAD_EMITTED_AT = "emitted_at is not a time"
BAD_TIMESTAMP = "timestamp is not an ISO 8601 time or date, or an epoch number in seconds, ms or us"
NOT_A_USER_ID = "user_id is not a whole number from 0 to 2^53 - 1"
PLACEHOLDERS = frozenset({"undefined", "null", "none", "nil", "nan", "anonymous", "[object object]", "0", "-1"})
"""Values that stand for no user: Heap would merge every record holding one into one user, for good once
identify links it. Compared trimmed and case-insensitively."""
LONGEST_PLACEHOLDER = max(map(len, PLACEHOLDERS))
AIRBYTE_COLUMNS = "_airbyte_"
"""The prefix of the columns Airbyte itself adds to records (`_airbyte_raw_id`, `_airbyte_extracted_at`, ...):
never sent by `*`, only when a column names one."""


def placeholder_reason(field: str) -> str:
    """The reason for a key that is blank or a placeholder."""
    return f"{field} is blank or a placeholder such as 'null' or 'undefined' (Heap would merge unrelated users)"


def is_placeholder(text: str) -> bool:
    """Whether a user or account key is blank or a known placeholder."""
    if len(text) <= LONGEST_PLACEHOLDER:
        trimmed = text.strip()
        return not trimmed or trimmed.lower() in PLACEHOLDERS
    return text.isspace()


MISSING_EVENT = "missing event"
MISSING_USER_ID = "missing user_id"
USER_ID_KEY = "\x00user_id:"
"""What marks a user id among the keys identify's calls are ordered by, apart from identities."""
USER_ID_PLACEHOLDER = "user_id is blank or a placeholder such as 'null' or '0' (Heap would merge unrelated users)"


@dataclass(slots=True)
class HeapItem:
    """One event, user or account as Heap receives it, with where it came from.

    A property update merged from several records keeps each record's own update in `merged`, so
    that when Heap refuses the merged one, each can be sent alone and only the bad one is rejected.
    `body` is None once a batch holds the item: the batch keeps its JSON instead. With a store for
    rejected records, `source` is the record as it came: its line (one object to hold while the item
    is in flight, where the parsed record is dozens), or its data and emitted_at when it came as an object.
    """

    key: str
    body: dict[str, Any] | None
    position: int
    records: int = 1
    notes: tuple[str, ...] = ()
    stream: StreamKey | None = None
    merged: tuple[HeapItem, ...] = ()
    source: bytes | tuple[Mapping[str, Any], float] | None = None
    also: str | None = None
    """A second key the item's request is ordered by (identify's user id), or None."""
    change: tuple[int, bytes, bytes] | None = None
    """With change detection, the snapshot's scope, key digest and value digest, recorded once Heap accepts it."""


@dataclass(frozen=True, slots=True)
class Unmappable:
    """A record that cannot become a Heap item, why, and the column at fault when one is."""

    reason: str
    position: int
    field: str | None = None


class Column:
    """A reference to a source field: an exact key, a dotted path, or a path flattened with `_`."""

    __slots__ = ("name", "parts")

    def __init__(self, name: str) -> None:
        self.name = name
        self.parts = tuple(name.split(".")) if "." in name else ()

    def lookup(self, record: Mapping[str, Any]) -> Any:
        """The value this column names in the record, or MISSING."""
        value = record.get(self.name, MISSING)
        return self.nested(record) if value is MISSING else value

    def nested(self, record: Mapping[str, Any]) -> Any:
        """The value by dotted path, else by `_`-flattened path, or MISSING: for a name that is not a top-level key.

        JSON's other values refuse a key with a TypeError (a list, text or number) and an object without
        it with a KeyError: either ends the dotted path.
        """
        if self.parts:
            value: Any = record
            try:
                for part in self.parts:
                    value = value[part]
            except (KeyError, TypeError):
                pass
            else:
                return value
        return _lookup_flattened(record, self.name)

    def locate(self, record: Mapping[str, Any]) -> str | None:
        """Where this column's value is in the record, as a dotted path from the top level, or None."""
        if self.name in record or (self.parts and _has_path(record, self.parts)):
            return self.name
        path = _locate_flattened(record, self.name)
        return ".".join(path) if path else None


def _has_path(record: Mapping[str, Any], parts: Sequence[str]) -> bool:
    value: Any = record
    for part in parts:
        if type(value) is not dict or part not in value:
            return False
        value = value[part]
    return True


def _locate_flattened(record: Mapping[str, Any], name: str) -> list[str] | None:
    for key, value in record.items():
        if type(value) is dict and name.startswith(key + "_"):
            rest = name[len(key) + 1 :]
            if rest in value:
                return [key, rest]
            inner = _locate_flattened(value, rest)
            if inner is not None:
                return [key, *inner]
    return None


def _lookup_flattened(record: Mapping[str, Any], name: str) -> Any:
    for key, value in record.items():
        if type(value) is dict and name.startswith(key + "_"):
            rest = name[len(key) + 1 :]
            found = value.get(rest, MISSING)
            if found is MISSING:
                found = _lookup_flattened(value, rest)
            if found is not MISSING:
                return found
    return MISSING


def heap_scalar(value: Any, notes: list[str], joined: bool = False) -> Any:
    """A value Heap can hold (string or number), or None when there is nothing to send; with `joined` (the
    property APIs, which Heap documents no arrays for), a list is sent as the text track stores it as."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_TEXT:
            notes.append(TRUNCATED_VALUE)
            return value[:MAX_TEXT]
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return value if INT64_MIN <= value <= UINT64_MAX else heap_scalar(str(value), notes)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is list:
        return joined_list(value, notes) if joined else heap_list(value, notes)
    if value is None:
        return None
    return heap_scalar(str(value), notes)


STR_ONLY = frozenset({str})
SHORT_LIST = 16
"""A list up to this long is checked element by element for the common case, short strings only: for a few
elements a loop costs a fraction of building the set of their types."""


def heap_list(value: list[Any], notes: list[str]) -> Any:
    """A list Heap can hold: its scalars converted (nulls dropped), or its JSON text when it holds objects or
    lists. A list of short strings, the common case, is sent as it is."""
    if len(value) <= SHORT_LIST:
        for element in value:
            if type(element) is not str or len(element) > MAX_TEXT:
                break
        else:
            return value
    kinds = set(map(type, value))
    if dict in kinds or list in kinds:
        return heap_scalar(json.dumps(value, separators=(",", ":"), ensure_ascii=False), notes)
    if kinds == STR_ONLY and max(map(len, value)) <= MAX_TEXT:
        return value
    scalars = (heap_scalar(element, notes) for element in value)
    return [element for element in scalars if element is not None]


ARRAY_SEPARATOR = "||"


def joined_list(value: list[Any], notes: list[str]) -> str | None:
    """A list as one text, the way Heap stores track's arrays: its elements' texts joined by `||` (nulls
    dropped; objects and lists as their JSON), cut to Heap's length; None for a list of nothing. A short list
    of texts, the common case, is joined as it is (cutting each text first leaves the same cut join)."""
    if len(value) <= SHORT_LIST:
        for element in value:
            if type(element) is not str:
                break
        else:
            return heap_scalar(ARRAY_SEPARATOR.join(value), notes) if value else None
    texts = []
    for element in value:
        kind = type(element)
        if kind is dict or kind is list:
            texts.append(json.dumps(element, separators=(",", ":"), ensure_ascii=False))
        elif element is not None:
            scalar = heap_scalar(element, [])
            if scalar is not None:
                texts.append(scalar if type(scalar) is str else str(scalar))
    if not texts:
        return None
    return heap_scalar(ARRAY_SEPARATOR.join(texts), notes)


def add_property(properties: dict[str, Any], key: str, value: Any, notes: list[str], joined: bool = False) -> None:
    """Adds one source value under `key`, flattening nested objects to dotted keys."""
    if type(value) is dict:
        for inner_key, inner_value in value.items():
            add_property(properties, f"{key}.{inner_key}", inner_value, notes, joined)
        return
    value = heap_scalar(value, notes, joined)
    if value is None:
        return
    if len(key) > MAX_TEXT:
        notes.append(TRUNCATED_KEY)
        key = key[:MAX_TEXT]
    if key in properties:
        notes.append(NAME_COLLISION)
        return
    properties[key] = value


def identity_text(value: Any) -> str | None:
    """A user or account identifier as text, or None when the value cannot be one."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def user_id_text(value: Any) -> str | None:
    """A Heap SDK user id as Heap takes it (the decimal text of a whole number from 0 to 2^53 - 1, from text
    or from a number, `8675309.0` and `1e3` included), or None when the value is not one."""
    text = identity_text(value)
    return canonical_user_id(text) if text is not None else None


def canonical_user_id(text: str) -> str | None:
    """A user id's text as ASCII digits without leading zeros (`007` and `7` are one user to Heap, so one key
    to order calls by), or None unless it is a whole number from 0 to 2^53 - 1."""
    if not (text.isascii() and text.isdigit()):
        return None
    text = text.lstrip("0") or "0"
    return text if len(text) <= len(str(MAX_USER_ID)) and int(text) <= MAX_USER_ID else None


def canonical_json(value: Any) -> bytes:
    """A value's JSON with sorted keys, the same in every run; exact for integers of any size."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def stable_hash(value: Any) -> str:
    """A short hex digest of a value's canonical JSON, the same in every run."""
    return hashlib.blake2b(canonical_json(value), digest_size=16).hexdigest()


def failure_reason(error: Exception) -> str:
    """The reason category for a record whose mapping or encoding raised: never the error's text."""
    text = str(error)
    if isinstance(error, RecursionError) or "ecursion" in text:
        return TOO_DEEP
    if "surrogate" in text:
        return NOT_UNICODE
    return f"record could not be mapped ({type(error).__name__})"


class IdempotencyKey:
    """Derives a track event's idempotency key: the same for the same record in every sync, and never the
    same for records of different streams.

    The stream is its name, and its namespace when it has one (a stream without a namespace keeps
    the keys of earlier versions), then the scope that keeps two event mappings of it apart. The key
    hashes the stream with, in order of preference, the configured column's value, the catalog's
    primary key (plus cursor), or the whole record.
    """

    def __init__(
        self,
        stream: str,
        namespace: str | None = None,
        column: str | None = None,
        key_paths: Sequence[Sequence[str]] = (),
        scope: Sequence[str] = (),
    ) -> None:
        self.stream: list[str] = [stream] if namespace is None else [namespace, stream]
        self.stream += list(scope)
        self.column = Column(column) if column else None
        self.key_paths = [tuple(path) for path in key_paths]
        self.top_keys = [path[0] for path in self.key_paths] if all(len(path) == 1 for path in key_paths) else None
        self.only_key = self.top_keys[0] if self.top_keys is not None and len(self.top_keys) == 1 else None
        # The hash of `[*stream, value]` starts the same for every value: hashed once, copied per key.
        self.opening = hashlib.blake2b(canonical_json(self.stream)[:-1] + b",", digest_size=16)

    def derive(self, record: Mapping[str, Any], notes: list[str]) -> str:
        """The key of one record's event; a note when its configured column is missing."""
        if self.column is not None:
            value = identity_text(self.column.lookup(record))
            if value:
                return stable_hash([*self.stream, "column", value])
            notes.append(KEY_FROM_RECORD_HASH)
        elif self.only_key is not None:
            value = record.get(self.only_key)
            if value is not None:
                return self._hash([value])
        elif self.key_paths:
            if self.top_keys is not None:
                values = list(map(record.get, self.top_keys))
            else:
                values = [_walk(record, path) for path in self.key_paths]
            if None not in values:
                return self._hash(values)
        return self._hash(record)

    def _hash(self, value: Any) -> str:
        """`stable_hash([*self.stream, value])`, with the stream's part hashed once."""
        try:
            encoded = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return stable_hash([*self.stream, value])
        hasher = self.opening.copy()
        hasher.update(encoded)
        hasher.update(b"]")
        return hasher.hexdigest()


def _walk(record: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = record
    for part in path:
        if type(value) is not dict:
            return None
        value = value.get(part)
    return value


SEND, LEAVE_OUT, GIVE_WAY, REFUSE = range(4)
"""What `*` does with the values under one key path: send them, leave them out (a `-column`, or a column
that fills a Heap field), or leave them out with a note (a top-level key a named column's Heap name takes,
or a name Heap refuses)."""
PLANNED_PATHS = 10_000
"""Key paths a stream's plan remembers: records with keys of their own (ids as keys) are walked unplanned
past it, so the plan's memory is bounded."""


class KeyPlan:
    """One key path of a stream's records as `*` sends it: what to do with its values and the Heap name they
    go under; under it, the plans of the keys found there, and the names of those sent as they are (False
    for those left out, "" for those left out with a note, kept in `notes`, None for those the walk hands to
    the general path: named too long for Heap, or empty)."""

    __slots__ = ("action", "children", "flat", "name", "names", "notes", "path")

    def __init__(self, action: int, name: str, path: str, flat: str) -> None:
        self.action = action
        self.name = name
        self.path = path
        self.flat = flat
        self.children: dict[str, KeyPlan] = {}
        self.names: dict[str, str | bool | None] = {}
        self.notes: dict[str, str] = {}


class RestPlan:
    """What `*` sends of a stream's records, decided once per key path, the first time a record holds it.

    Left-out columns are matched against each value's source path (keys joined by `.`, or by `_`),
    exactly, whatever the keys hold. The per-record walk then does no name building and no matching:
    a key sent as it is finds its Heap name in one lookup, its value is converted by type in line, and
    only the rare ones (keys left out or noted, names too long for Heap, long text, collisions) take
    the general path. A name already in the properties (a named column's, or another path's) keeps
    its first value, on every record. Airbyte's own top-level columns (`_airbyte_*`) are left out.
    """

    def __init__(
        self, left_out: frozenset[str], named_outputs: frozenset[str], refused: frozenset[str], joined: bool = False
    ) -> None:
        self.left_out = left_out
        self.named_outputs = named_outputs
        self.refused = refused
        self.joined = joined
        self.root = KeyPlan(SEND, "", "", "")
        self.planned = 0

    def add(
        self,
        properties: dict[str, Any],
        value: Mapping[str, Any],
        notes: list[str],
        long_texts: bool = True,
        parent: KeyPlan | None = None,
    ) -> None:
        """Adds what `*` sends of a record (or of the object at `parent`'s path in it) to its properties;
        `long_texts` False when the record is known to hold no text longer than Heap takes (its line is no
        longer), so no text's length is checked."""
        parent = parent or self.root
        names = parent.names
        for key, inner in value.items():
            try:
                name = names[key]
            except KeyError:  # a key not planned yet (or past the plan's room): indexing is cheaper than get
                name = None
            if not name:
                if name is None:
                    self._unusual(properties, parent, key, inner, notes, long_texts)
                elif name is not False:
                    notes.append(parent.notes[key])
                continue
            kind = type(inner)
            if kind is str:
                if long_texts and len(inner) > MAX_TEXT:
                    add_property(properties, name, inner, notes)
                    continue
            elif kind is dict:
                self.add(properties, inner, notes, long_texts, parent.children[key])
                continue
            elif kind is bool:
                inner = "true" if inner else "false"
            elif kind is int:
                if not INT64_MIN <= inner <= UINT64_MAX:  # sent as text, cut like any long text
                    add_property(properties, name, inner, notes, self.joined)
                    continue
            elif kind is float:
                if not math.isfinite(inner):
                    continue
            elif kind is list:
                inner = joined_list(inner, notes) if self.joined else heap_list(inner, notes)
                if inner is None:
                    continue
            elif inner is None:
                continue
            else:
                add_property(properties, name, inner, notes, self.joined)
                continue
            if name not in properties:
                properties[name] = inner
            else:
                notes.append(NAME_COLLISION)

    def _unusual(
        self, properties: dict[str, Any], parent: KeyPlan, key: str, value: Any, notes: list[str], long_texts: bool
    ) -> None:
        """A value whose key is new to the plan, left out, noted, or under a name too long for Heap."""
        plan = parent.children.get(key) or self._plan(parent, key)
        if plan.action == SEND:
            if type(value) is dict:
                self.add(properties, value, notes, long_texts, plan)
            else:
                add_property(properties, plan.name, value, notes, self.joined)
        elif plan.action == GIVE_WAY:
            notes.append(GAVE_WAY)
        elif plan.action == REFUSE:
            notes.append(REFUSED_NAME_LEFT_OUT)

    def _plan(self, parent: KeyPlan, key: str) -> KeyPlan:
        """The plan of a key under `parent`, made now and remembered while the plan has room."""
        top = parent is self.root
        path, flat, name = (
            (key, key, key) if top else (f"{parent.path}.{key}", f"{parent.flat}_{key}", f"{parent.name}.{key}")
        )
        if path in self.left_out or flat in self.left_out or (top and key.startswith(AIRBYTE_COLUMNS)):
            action = LEAVE_OUT
        elif top and key in self.named_outputs:
            action = GIVE_WAY
        elif top and self.refused and key.lower() in self.refused:
            action = REFUSE
        else:
            action = SEND
        plan = KeyPlan(action, name, path, flat)
        if self.planned < PLANNED_PATHS:
            self.planned += 1
            parent.children[key] = plan
            if action == LEAVE_OUT:
                parent.names[key] = False
            elif action in (GIVE_WAY, REFUSE):
                parent.names[key] = ""
                parent.notes[key] = GAVE_WAY if action == GIVE_WAY else REFUSED_NAME_LEFT_OUT
            elif action == SEND and 0 < len(name) <= MAX_TEXT:
                parent.names[key] = name
            else:
                parent.names[key] = None
        return plan


class RecordMapper:
    """Maps source records to Heap items for one API: the user or account key, and the properties.

    `EventMapper` adds what track adds; `mapper_for` picks the mapper of an API.

    Left-out columns (`-column`) are matched against the source path of each value that would be
    sent, nested ones included, as keys joined by `.` (or by `_`): exactly, whatever the keys hold.
    `*` leaves out, the same way, the columns sent by name and those that fill Heap's own fields
    (event, timestamp, idempotency key); the key column stays in it.
    """

    def __init__(
        self, api: ApiConfig, idempotency_key: IdempotencyKey, stream: StreamKey | None = None, keep: bool = False
    ) -> None:
        self.stream = stream
        self.keep = keep
        self.key_field = api.key_field
        self.numeric_key = api.key_field == "user_id"
        self.key = Column(api.key_column)
        selection = api.properties
        self.named = [(column.name, Column(column.source)) for column in selection.named]
        self.excluded = frozenset(selection.excluded)
        left_out = self.excluded | {column.source for column in selection.named} | api.own_field_columns
        named_outputs = frozenset(name for name, _ in self.named)
        self.joined = api.joins_arrays
        self.rest = (
            RestPlan(left_out, named_outputs, api.refused_property_names, self.joined) if selection.rest else None
        )
        self.fields_of: dict[str, str] = {}
        self.sends_properties = api.sends_properties
        self.placeholder = placeholder_reason(self.key_field)

    def map(
        self, record: Mapping[str, Any], emitted_at: float, position: int, line: bytes | None = None
    ) -> HeapItem | Unmappable:
        """The Heap item for one record, or why there is none; `line` is the line the record came in, if any
        (no text in the record is longer: a character takes at least a byte)."""
        column = self.key.name
        key = record.get(column, MISSING)
        if type(key) is not str:
            if key is MISSING:
                key = self.key.nested(record)
            if key is MISSING or key is None:
                return Unmappable(f"missing {self.key_field}", position, column)
            key = identity_text(key)
            if key is None:
                return Unmappable(f"{self.key_field} is not a string or number", position, column)
        if not key:
            return Unmappable(f"missing {self.key_field}", position, column)
        if self.numeric_key:  # the user id rule identify applies too
            user_id = canonical_user_id(key)
            if user_id is None or user_id == "0":
                placeholder = user_id is not None or is_placeholder(key)
                return Unmappable(self.placeholder if placeholder else NOT_A_USER_ID, position, column)
            key = user_id
        elif len(key) > MAX_IDENTITY:
            return Unmappable(f"{self.key_field} longer than {MAX_IDENTITY} characters", position, column)
        elif (len(key) <= LONGEST_PLACEHOLDER or key[0].isspace()) and is_placeholder(key):
            return Unmappable(self.placeholder, position, column)
        notes: list[str] = []
        body: dict[str, Any] = {self.key_field: key}
        reason = self._fields(record, emitted_at, body, notes)
        if reason is not None:
            return Unmappable(reason, position, self.fields_of.get(reason))
        if self.sends_properties:
            # The named columns under their Heap names, then with `*` every other column whose name no named
            # column took. Short strings, the common case, skip the general conversion.
            properties: dict[str, Any] = {}
            body["properties"] = properties
            for name, column in self.named:
                value = record.get(column.name, MISSING)
                if value is MISSING:
                    value = column.nested(record)
                    if value is MISSING:
                        continue
                if type(value) is str and len(value) <= MAX_TEXT and name not in properties:
                    properties[name] = value
                elif self.excluded and type(value) is dict:
                    path = column.locate(record) or column.name
                    _add_leaving_out(
                        properties, name, value, notes, path, path.replace(".", "_"), self.excluded, self.joined
                    )
                else:
                    add_property(properties, name, value, notes, self.joined)
            if self.rest is not None:
                self.rest.add(properties, record, notes, line is None or len(line) > MAX_TEXT)
        source = (line if line is not None else (record, emitted_at)) if self.keep else None
        return HeapItem(key, body, position, 1, tuple(notes) if notes else (), self.stream, (), source)

    def _fields(
        self, record: Mapping[str, Any], emitted_at: float, body: dict[str, Any], notes: list[str]
    ) -> str | None:
        """Adds the fields an API has beyond its key and properties; the reason when the record cannot be sent."""
        return None


class EventMapper(RecordMapper):
    """Maps source records to track events: the event name (fixed or from a column), time and idempotency key."""

    def __init__(
        self, api: TrackApi, idempotency_key: IdempotencyKey, stream: StreamKey | None = None, keep: bool = False
    ) -> None:
        super().__init__(api, idempotency_key, stream, keep)
        self.event_name = api.event_name
        self.event = Column(api.event_column) if api.event_column else None
        self.timestamp = Column(api.timestamp_column) if api.timestamp_column else None
        self.idempotency_key = idempotency_key
        self.fields_of = {
            reason: column
            for reason, column in ((MISSING_EVENT, api.event_column), (BAD_TIMESTAMP, api.timestamp_column))
            if column
        }

    def _fields(
        self, record: Mapping[str, Any], emitted_at: float, body: dict[str, Any], notes: list[str]
    ) -> str | None:
        """Adds event, timestamp and idempotency key; the reason when the record cannot be an event."""
        event = self.event_name
        if not event:
            column = self.event
            event = record.get(column.name, MISSING)
            if event is MISSING:
                event = column.nested(record)
            if type(event) is not str:
                event = identity_text(event)
            if not event:
                return MISSING_EVENT
        if len(event) > MAX_EVENT:
            notes.append(TRUNCATED_EVENT)
            event = event[:MAX_EVENT]
        body["event"] = event
        column = self.timestamp
        value = MISSING
        if column is not None:
            value = record.get(column.name, MISSING)
            if value is MISSING:
                value = column.nested(record)
        if value is MISSING or value is None or value == "":
            if column is not None:
                notes.append(TIMESTAMP_FROM_EMITTED_AT)
            timestamp = heap_time_of_epoch_ms(emitted_at)
            if timestamp is None:
                return BAD_EMITTED_AT
        else:
            timestamp = heap_time(value)
            if timestamp is None:
                return BAD_TIMESTAMP
        body["timestamp"] = timestamp
        body["idempotency_key"] = self.idempotency_key.derive(record, notes)
        return None


class IdentifyMapper(RecordMapper):
    """Maps source records to identify calls: the identity (the key), the SDK user id it takes over, and
    when the link was made (Heap uses now when there is no timestamp column or value)."""

    def __init__(
        self, api: IdentifyApi, idempotency_key: IdempotencyKey, stream: StreamKey | None = None, keep: bool = False
    ) -> None:
        super().__init__(api, idempotency_key, stream, keep)
        self.user_id = Column(api.user_id_column)
        self.timestamp = Column(api.timestamp_column) if api.timestamp_column else None
        self.fields_of = {
            reason: api.user_id_column for reason in (NOT_A_USER_ID, MISSING_USER_ID, USER_ID_PLACEHOLDER)
        }
        if api.timestamp_column:
            self.fields_of[BAD_TIMESTAMP] = api.timestamp_column

    def map(
        self, record: Mapping[str, Any], emitted_at: float, position: int, line: bytes | None = None
    ) -> HeapItem | Unmappable:
        """The identify call for one record, ordered by its user id as well as its identity."""
        item = super().map(record, emitted_at, position, line)
        if type(item) is HeapItem:
            item.also = USER_ID_KEY + item.body["user_id"]  # type: ignore[index]
        return item

    def _fields(
        self, record: Mapping[str, Any], emitted_at: float, body: dict[str, Any], notes: list[str]
    ) -> str | None:
        """Adds user_id and timestamp; the reason when the record cannot be a link."""
        value = self.user_id.lookup(record)
        if value is MISSING or value is None or value == "":
            return MISSING_USER_ID
        user_id = user_id_text(value)
        if user_id is None:
            text = identity_text(value)
            return USER_ID_PLACEHOLDER if text is not None and is_placeholder(text) else NOT_A_USER_ID
        if user_id == "0":
            return USER_ID_PLACEHOLDER
        body["user_id"] = user_id
        if self.timestamp is not None:
            stamp = self.timestamp.lookup(record)
            if not (stamp is MISSING or stamp is None or stamp == ""):
                text = heap_time(stamp)
                if text is None:
                    return BAD_TIMESTAMP
                body["timestamp"] = text
        return None


MAPPERS: dict[str, type[RecordMapper]] = {"track": EventMapper, "identify": IdentifyMapper}
"""The mapper of each API that adds fields of its own; the others map key and properties only."""


def mapper_for(
    api: ApiConfig, idempotency_key: IdempotencyKey, stream: StreamKey | None = None, keep: bool = False
) -> RecordMapper:
    """The mapper for an API's items of one stream; with `keep`, items hold their record as it came, so a
    record Heap refuses can be kept as it came."""
    return MAPPERS.get(api.api_type, RecordMapper)(api, idempotency_key, stream, keep)


def _add_leaving_out(
    properties: dict[str, Any],
    name: str,
    value: dict[str, Any],
    notes: list[str],
    path: str,
    flat: str,
    left_out: frozenset[str],
    joined: bool,
) -> None:
    """Adds a nested object's values under dotted names, but not those whose source path (keys joined by `.`,
    or by `_`) is left out."""
    for key, inner in value.items():
        inner_path, inner_flat = f"{path}.{key}", f"{flat}_{key}"
        if inner_path in left_out or inner_flat in left_out:
            continue
        if type(inner) is dict:
            _add_leaving_out(properties, f"{name}.{key}", inner, notes, inner_path, inner_flat, left_out, joined)
        else:
            add_property(properties, f"{name}.{key}", inner, notes, joined)
