"""Reads Airbyte protocol lines: records, STATE messages kept as their raw JSON, and why a line is neither."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import orjson
from airbyte_cdk.models import AirbyteMessage, AirbyteMessageSerializer, FailureType, Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

StreamKey = tuple[str, str | None]
"""A stream as the protocol identifies it: name and namespace together."""

Record = tuple[StreamKey, Mapping[str, Any], float]
"""A record as the sync reads it: its stream, its data, emitted_at in epoch milliseconds."""

NOT_JSON = "not valid JSON"
TOO_DEEP = "JSON nested too deeply"
NOT_A_MESSAGE = "not an Airbyte message"
NO_RECORD = "RECORD without a record object"
NO_STREAM = "RECORD without a stream name"
NO_DATA = "RECORD whose data is not an object"
NO_EMITTED_AT = "RECORD whose emitted_at is not a number"
IGNORED_TYPES = frozenset({"LOG", "TRACE", "CONTROL", "SPEC", "CONNECTION_STATUS", "CATALOG", "DESTINATION_CATALOG"})
STATE_TYPES = ("STREAM", "GLOBAL", "LEGACY")

DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
LONG_INTEGER = b"0" * 19
"""A run of digits long enough to be an integer beyond 64 bits (which orjson would read as a float), once
every digit reads as 0: translating and searching for it costs a tenth of a regular expression's scan."""


class Unreadable(NamedTuple):
    """An input line that holds no usable record, why, and the stream it names when it names one."""

    line: int
    reason: str
    stream: StreamKey | None = None


class State(NamedTuple):
    """A STATE message exactly as it came, and the stream it checkpoints (None for GLOBAL and LEGACY)."""

    message: dict[str, Any]
    stream: StreamKey | None


Message = Record | State | Unreadable
"""What the sync reads: a record, a STATE message, or a line that could not be used."""


def read_lines(lines: Iterable[bytes]) -> Iterator[Message]:
    """The messages of protocol lines; other protocol messages (LOG, TRACE, ...) and blank lines are skipped."""
    for number, line in enumerate(lines, start=1):
        try:
            message = parse_json(line)
        except RecursionError:
            yield Unreadable(number, TOO_DEEP)
            continue
        except ValueError:
            if line.strip():
                yield Unreadable(number, NOT_JSON)
            continue
        if type(message) is not dict:
            yield Unreadable(number, NOT_A_MESSAGE)
            continue
        kind = message.get("type")
        if kind == "RECORD":
            yield _record(message.get("record"), number)
        elif kind == "STATE":
            yield state_of(message, number)
        elif kind not in IGNORED_TYPES:
            yield Unreadable(number, NOT_A_MESSAGE)


def read_messages(messages: Iterable[AirbyteMessage]) -> Iterator[Message]:
    """The messages of protocol objects, for callers of `Destination.write`."""
    dump = AirbyteMessageSerializer.dump
    for number, message in enumerate(messages, start=1):
        if message.type == Type.RECORD:
            yield _record(dump(message)["record"], number)
        elif message.type == Type.STATE:
            yield state_of(dump(message), number)


def parse_json(line: bytes) -> Any:
    """A JSON value with every integer exact; also reads NaN, Infinity and lone surrogate escapes.

    orjson is the fast path; Python's parser takes lines that may hold integers beyond 64 bits
    (orjson reads those as floats) and lines orjson refuses.
    """
    if LONG_INTEGER not in line.translate(DIGITS_AS_ZERO):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    return json.loads(line)


def dump_json(value: Any) -> bytes:
    """JSON for a value read by `parse_json`: the same value back, integers of any size and lone surrogates included.

    Raises ValueError for what cannot be written (nesting deeper than the encoders allow).
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        pass
    try:
        return json.dumps(value, separators=(",", ":")).encode()
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


def _record(record: Any, number: int) -> Record | Unreadable:
    if type(record) is not dict:
        return Unreadable(number, NO_RECORD)
    name, namespace = record.get("stream"), record.get("namespace")
    if type(name) is not str or not (namespace is None or type(namespace) is str):
        return Unreadable(number, NO_STREAM)
    stream = (name, namespace)
    data, emitted_at = record.get("data"), record.get("emitted_at")
    if type(data) is not dict:
        return Unreadable(number, NO_DATA, stream)
    kind = type(emitted_at)
    if not (kind is int or (kind is float and math.isfinite(emitted_at))):
        return Unreadable(number, NO_EMITTED_AT, stream)
    return stream, data, emitted_at


def state_of(message: dict[str, Any], number: int) -> State:
    """The STATE in a message, or a clear error saying what the protocol's STATE lacks."""
    state = message.get("state")
    if type(state) is not dict:
        raise malformed_state(number, "it has no state object")
    try:
        dump_json(message)
    except ValueError:
        raise malformed_state(number, "it is nested too deeply to be passed back") from None
    kind = state.get("type", "LEGACY")
    if kind not in STATE_TYPES:
        raise malformed_state(number, "its type is not STREAM, GLOBAL or LEGACY")
    if kind != "STREAM":
        return State(message, None)
    stream = state.get("stream")
    descriptor = stream.get("stream_descriptor") if type(stream) is dict else None
    if type(descriptor) is not dict:
        raise malformed_state(number, "a STREAM state has no stream.stream_descriptor object")
    name, namespace = descriptor.get("name"), descriptor.get("namespace")
    if type(name) is not str or not (namespace is None or type(namespace) is str):
        raise malformed_state(number, "its stream descriptor has no name, or a namespace that is not text")
    return State(message, (name, namespace))


class MalformedState(AirbyteTracedException):
    """A STATE message the sync cannot checkpoint; reading stops there."""


def malformed_state(number: int, why: str) -> MalformedState:
    """The error for a STATE message the sync cannot checkpoint."""
    message = f"The STATE message on input line {number} is malformed: {why}. Nothing after it was checkpointed."
    return MalformedState(internal_message=message, message=message, failure_type=FailureType.system_error)
