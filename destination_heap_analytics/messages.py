"""Reads Airbyte protocol lines: records, STATE messages kept as their raw JSON, and why a line is neither."""

from __future__ import annotations

import io
import json
import math
import queue
import re
import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from json.decoder import scanstring
from typing import IO, Any, NamedTuple

import orjson
from airbyte_cdk.models import AirbyteMessage, AirbyteMessageSerializer, FailureType, Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

StreamKey = tuple[str, str | None]
"""A stream as the protocol identifies it: name and namespace together."""

Record = tuple[StreamKey, Mapping[str, Any], float, bytes | None]
"""A record as the sync reads it: its stream, its data, emitted_at in epoch milliseconds, and the line it came
in, with its newline (None for a record given as an object)."""

NOT_JSON = "not valid JSON"
TOO_DEEP = "JSON nested too deeply"
NOT_A_MESSAGE = "not an Airbyte message"
NO_RECORD = "RECORD without a record object"
NO_STREAM = "RECORD without a stream name"
NO_DATA = "RECORD whose data is not an object"
NO_EMITTED_AT = "RECORD whose emitted_at is not a number"
IGNORED_TYPES = frozenset({"LOG", "TRACE", "CONTROL", "SPEC", "CONNECTION_STATUS", "CATALOG", "DESTINATION_CATALOG"})
STATE_TYPES = ("STREAM", "GLOBAL", "LEGACY")

UNPARSED = object()
"""A line the in-line reading did not parse (it may hold a long integer, or orjson refused it)."""
DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
LONG_INTEGER = b"0" * 19
"""A run of digits long enough to be an integer beyond 64 bits (which orjson would read as a float), once
every digit reads as 0: translating and searching for it costs a tenth of a regular expression's scan."""


def short_integers_only(data: bytes) -> bool:
    """Whether no run of digits in `data` is long enough to be an integer beyond 64 bits."""
    return LONG_INTEGER not in data.translate(DIGITS_AS_ZERO)


class Unreadable(NamedTuple):
    """An input line that holds no usable record, why, the stream it names when it names one, and then the line
    itself (to keep it as it came)."""

    line: int
    reason: str
    stream: StreamKey | None = None
    raw: bytes | None = None


class State(NamedTuple):
    """A STATE message as the bytes it came as, split where `state.destinationStats`'s value goes (found once,
    when the line is read), and the stream it checkpoints (None for GLOBAL and LEGACY)."""

    head: bytes
    tail: bytes
    stream: StreamKey | None

    def line(self, stats: Mapping[str, float]) -> bytes:
        """The STATE exactly as it came, but with `destinationStats` set to `stats` (added or replaced)."""
        return self.head + orjson.dumps(dict(stats)) + self.tail

    @property
    def size(self) -> int:
        """Bytes held."""
        return len(self.head) + len(self.tail)


class StreamEnded(NamedTuple):
    """The source's word that a stream ended (a TRACE STREAM_STATUS of COMPLETE or INCOMPLETE, which the
    platform passes on to destinations), and how."""

    stream: StreamKey
    status: str


ENDED = frozenset({"COMPLETE", "INCOMPLETE"})


def stream_ended(message: dict[str, Any]) -> StreamEnded | None:
    """The stream a TRACE message says has ended, or None for any other TRACE (or one of odd shape)."""
    trace = message.get("trace")
    status = trace.get("stream_status") if type(trace) is dict and trace.get("type") == "STREAM_STATUS" else None
    descriptor = status.get("stream_descriptor") if type(status) is dict else None
    if type(descriptor) is not dict or status.get("status") not in ENDED:  # type: ignore[union-attr]
        return None
    name, namespace = descriptor.get("name"), descriptor.get("namespace")
    if type(name) is not str or not (namespace is None or type(namespace) is str):
        return None
    return StreamEnded((name, namespace), status["status"])  # type: ignore[index]


class Tick(NamedTuple):
    """A while since the last tick: time to send what waits and pass what is safe. `idle` when no input
    came for that while."""

    idle: bool


TICK, IDLE = Tick(False), Tick(True)

Message = Record | State | Unreadable | StreamEnded
"""What the sync reads: a record, a STATE message, or a line that could not be used (and StreamEnded, the
source's word that a stream ended)."""


class LineReader:
    """Reads protocol lines, numbering them across calls; other protocol messages (LOG, TRACE, ...) and blank
    lines are skipped, and a line that fails in any way is an unreadable line, never an error."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, lines: Iterable[bytes], short_integers: bool = False) -> Iterator[Message]:
        """The messages of `lines`; `short_integers` when the caller found that none can hold an integer
        beyond 64 bits, so orjson reads each exactly."""
        loads = orjson.loads
        number = self.number  # the last line's number, kept for the next call's lines
        for number, line in enumerate(lines, self.number + 1):
            message: Any = UNPARSED
            if short_integers or short_integers_only(line):
                try:
                    message = loads(line)
                except ValueError:
                    message = UNPARSED
            # The common case, read in line: a RECORD whose fields have the protocol's types. Only an object
            # (of JSON's values) can be indexed by a key: a line that lacks a field, or holds another value
            # where an object is due, fails an index and takes the general path below.
            try:
                if message["type"] == "RECORD":
                    record = message["record"]
                    name, data, emitted_at = record["stream"], record["data"], record["emitted_at"]
                    namespace = record.get("namespace")
                    fast = (
                        type(data) is dict
                        and type(name) is str
                        and (namespace is None or type(namespace) is str)
                        and (type(emitted_at) is int or (type(emitted_at) is float and math.isfinite(emitted_at)))
                    )
                else:
                    fast = False
            except (KeyError, TypeError):
                fast = False
            if fast:
                yield (name, namespace), data, emitted_at, line
                continue
            try:
                message = _message(line, number) if message is UNPARSED else _classified(message, line, number)
            except MalformedState:
                raise
            except Exception as error:
                message = Unreadable(number, f"line could not be read ({type(error).__name__})")
            if message is not None:
                yield message
        self.number = number


def read_lines(lines: Iterable[bytes]) -> Iterator[Message]:
    """The messages of protocol lines, numbered from 1."""
    return LineReader()(lines)


def _message(line: bytes, number: int) -> Message | None:
    try:
        message = parse_json(line)
    except RecursionError:
        return Unreadable(number, TOO_DEEP, *_named(line))
    except ValueError:
        return Unreadable(number, NOT_JSON, *_named(line)) if line.strip() else None
    return _classified(message, line, number)


def _named(line: bytes) -> tuple[StreamKey, bytes] | tuple[()]:
    """The stream a line the parser cannot read names, with the line, when it is a RECORD's; else nothing."""
    stream = record_stream(line)
    return (stream, line) if stream is not None else ()


TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


def record_stream(line: bytes) -> StreamKey | None:
    """The stream (name and namespace) of a RECORD line, found without parsing its values, so whatever the
    parser refuses in them (nesting too deep, an integer too long, a cut-off end); None when the line's
    envelope does not say it is a RECORD of a named stream.

    A scan of JSON tokens that keeps only a count of open containers, so no depth makes it recurse.
    """
    containers: list[bytes] = []
    entered: list[bytes | None] = []  # the key each open object or array was entered under
    key: bytes | None = None
    expecting_key = False
    found: dict[tuple[int, bytes], bytes] = {}
    for match in TOKEN.finditer(line):
        token = match.group()
        first = token[:1]
        if first == b"{" or first == b"[":
            containers.append(first)
            entered.append(key)
            key, expecting_key = None, first == b"{"
        elif first == b"}" or first == b"]":
            if not containers:
                return None
            containers.pop()
            entered.pop()
            key, expecting_key = None, False
        elif first == b",":
            key, expecting_key = None, bool(containers) and containers[-1] == b"{"
        elif first == b":":
            expecting_key = False
        elif expecting_key:
            key, expecting_key = token, False
        elif (
            key is not None
            and len(containers) <= 2
            and containers[0] == b"{"
            and (len(containers) == 1 or (containers[1] == b"{" and entered[1] == b'"record"'))
        ):
            found[(len(containers), key)] = token
    if found.get((1, b'"type"')) != b'"RECORD"' or (2, b'"stream"') not in found:
        return None
    try:
        name = json.loads(found[(2, b'"stream"')])
        namespace = json.loads(found.get((2, b'"namespace"'), b"null"))
    except ValueError:
        return None
    if type(name) is not str or not (namespace is None or type(namespace) is str):
        return None
    return name, namespace


def _classified(message: Any, line: bytes, number: int) -> Message | None:
    """A line's JSON as a record, a STATE, or why it is neither; None for messages that are skipped."""
    if type(message) is not dict:
        return Unreadable(number, NOT_A_MESSAGE)
    kind = message.get("type")
    if kind == "RECORD":
        return _record(message.get("record"), number, line)
    if kind == "STATE":
        return state_of(message, line, number)
    if kind == "TRACE":
        return stream_ended(message)
    if type(kind) is str and kind in IGNORED_TYPES:
        return None
    return Unreadable(number, NOT_A_MESSAGE)


class ObjectReader:
    """Reads protocol objects, for callers of `Destination.write`, numbering them across calls."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, messages: Iterable[AirbyteMessage]) -> Iterator[Message]:
        dump = AirbyteMessageSerializer.dump
        for message in messages:
            self.number += 1
            if message.type == Type.RECORD:
                yield _record(dump(message)["record"], self.number, None)
            elif message.type == Type.STATE:
                body = dump(message)
                try:
                    raw = dump_json(body)
                except ValueError:
                    raise malformed_state(self.number, "it is nested too deeply to be passed back") from None
                yield state_of(body, raw, self.number)
            elif message.type == Type.TRACE:
                ended = stream_ended(dump(message))
                if ended is not None:
                    yield ended


NEWLINE = ord("\n")
READ_BYTES = 1 << 16
"""The most a read of the input takes at once: a pipe's size, and few enough lines that they are still in the
CPU's caches when they are parsed (reads of a megabyte cost more CPU in all)."""


def polled_lines(
    stream: IO[bytes], read: Callable[[list[bytes], bool], Iterable[Message]], interval: float
) -> Iterator[Message | Tick]:
    """The messages of a byte stream's lines, read on this thread as they arrive, with a TICK at least every
    `interval` seconds whether input flows or not.

    Each read is scanned once for integers beyond 64 bits, so its lines need no scan of their own
    (a line begun in an earlier read is scanned whole, as a run of digits may span two reads). A read is
    cut into lines by `readlines`, which finds each newline with memchr (`split` tests every byte); each
    line keeps its newline, which JSON reads as whitespace.

    The stream is polled, so time-based work does not wait for the next line, and what is read is
    handed on at once, so a quiet source's last lines are not held back. (`read1` reads straight into
    its result while the stream's buffer is empty, as it always is here, so no input waits in the
    buffer where polling the descriptor would miss it.)
    """
    descriptor = stream.fileno()
    tail: list[bytes] = []
    last_tick = time.monotonic()
    while True:
        if not select.select([descriptor], [], [], interval)[0]:
            last_tick = time.monotonic()
            yield IDLE
            continue
        data = stream.read1(READ_BYTES)  # type: ignore[attr-defined]
        if not data:
            if tail:
                yield from read([b"".join(tail)], False)
            return
        if b"\n" in data:
            lines = io.BytesIO(data).readlines()
            short_integers = short_integers_only(data)
            if tail:
                lines[0] = b"".join(tail) + lines[0]
                short_integers = short_integers and short_integers_only(lines[0])
            tail = [lines.pop()] if lines[-1][-1] != NEWLINE else []
            yield from read(lines, short_integers)
        else:
            tail.append(data)
        now = time.monotonic()
        if now - last_tick >= interval:
            last_tick = now
            yield TICK


QUEUED_CHUNKS = 16
"""Chunks (one message each, from `write`'s callers) read ahead of the sync."""


class _End(NamedTuple):
    error: BaseException | None


def ticking(
    chunks: Iterable[list[Any]], read: Callable[[list[Any]], Iterable[Message]], interval: float
) -> Iterator[Message | Tick]:
    """The messages of chunks read on a thread of their own, with a TICK at least every `interval` seconds,
    whether input flows or not, so time-based work does not wait for the next line."""
    ready: queue.Queue[list[Any] | _End] = queue.Queue(QUEUED_CHUNKS)
    stopped = threading.Event()

    def put(item: list[Any] | _End) -> None:
        while not stopped.is_set():
            try:
                ready.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def pump() -> None:
        try:
            for chunk in chunks:
                put(chunk)
                if stopped.is_set():
                    return
        except BaseException as error:
            put(_End(error))
            return
        put(_End(None))

    threading.Thread(target=pump, name="heap-input", daemon=True).start()
    last_tick = time.monotonic()
    try:
        while True:
            try:
                chunk = ready.get(timeout=interval)
            except queue.Empty:
                last_tick = time.monotonic()
                yield IDLE
                continue
            if type(chunk) is _End:
                if chunk.error is not None:
                    raise chunk.error
                return
            yield from read(chunk)
            now = time.monotonic()
            if now - last_tick >= interval:
                last_tick = now
                yield TICK
    finally:
        stopped.set()


def parse_json(line: bytes) -> Any:
    """A JSON value with every integer exact; also reads NaN, Infinity and lone surrogate escapes.

    orjson is the fast path; Python's parser takes lines that may hold integers beyond 64 bits
    (orjson reads those as floats) and lines orjson refuses.
    """
    if short_integers_only(line):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    return json.loads(line, parse_int=_integer)


INT_DIGITS = 4300
"""The longest integer Python turns from text into a number by default (longer ones take quadratic time)."""


class LongInteger(str):
    """An integer of more than INT_DIGITS digits, kept as its text: sent as text (cut to Heap's length) like
    any integer too large for Heap, and stored as text."""

    __slots__ = ()


def _integer(text: str) -> int | LongInteger:
    return int(text) if len(text.lstrip("-")) <= INT_DIGITS else LongInteger(text)


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


def _record(record: Any, number: int, line: bytes | None) -> Record | Unreadable:
    if type(record) is not dict:
        return Unreadable(number, NO_RECORD)
    name, namespace = record.get("stream"), record.get("namespace")
    if type(name) is not str or not (namespace is None or type(namespace) is str):
        return Unreadable(number, NO_STREAM)
    stream = (name, namespace)
    data, emitted_at = record.get("data"), record.get("emitted_at")
    if type(data) is not dict:
        return Unreadable(number, NO_DATA, stream, line)
    kind = type(emitted_at)
    if not (kind is int or (kind is float and math.isfinite(emitted_at))):
        return Unreadable(number, NO_EMITTED_AT, stream, line)
    return stream, data, emitted_at, line


def record_of(line: bytes) -> tuple[Any, float]:
    """The data and emitted_at of a RECORD line read before (so known to be one), exactly as they came."""
    record = parse_json(line)["record"]
    return record["data"], record["emitted_at"]


def state_of(message: dict[str, Any], raw: bytes, number: int) -> State:
    """The STATE in a message (its raw bytes kept), or a clear error saying what the protocol's STATE lacks."""
    state = message.get("state")
    if type(state) is not dict:
        raise malformed_state(number, "it has no state object")
    kind = state.get("type", "LEGACY")
    if type(kind) is not str or kind not in STATE_TYPES:
        raise malformed_state(number, "its type is not STREAM, GLOBAL or LEGACY")
    try:
        head, tail = stats_splice(raw)
    except (ValueError, IndexError, RecursionError):
        raise malformed_state(number, "it cannot be passed back with destinationStats added") from None
    if kind != "STREAM":
        return State(head, tail, None)
    stream = state.get("stream")
    descriptor = stream.get("stream_descriptor") if type(stream) is dict else None
    if type(descriptor) is not dict:
        raise malformed_state(number, "a STREAM state has no stream.stream_descriptor object")
    name, namespace = descriptor.get("name"), descriptor.get("namespace")
    if type(name) is not str or not (namespace is None or type(namespace) is str):
        raise malformed_state(number, "its stream descriptor has no name, or a namespace that is not text")
    return State(head, tail, (name, namespace))


WHITESPACE = re.compile(r"[ \t\n\r]*")
DECODER = json.JSONDecoder()


def _members(text: str, start: int) -> Iterator[tuple[str, int, int]]:
    """Each member of the JSON object opening at `start`: its key, where its value starts and ends."""
    position = WHITESPACE.match(text, start + 1).end()  # type: ignore[union-attr]
    if text[position] == "}":
        return
    while True:
        key, position = scanstring(text, position + 1)
        position = WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        value_start = WHITESPACE.match(text, position + 1).end()  # type: ignore[union-attr]
        _, position = DECODER.raw_decode(text, value_start)
        yield key, value_start, position
        position = WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        if text[position] == "}":
            return
        position = WHITESPACE.match(text, position + 1).end()  # type: ignore[union-attr]


def stats_splice(raw: bytes) -> tuple[bytes, bytes]:
    """A STATE line cut where `state.destinationStats`'s value goes: before it (the key added when the state
    has none) and after it (an existing value left out). Every other byte is kept: numbers beyond what a
    float holds, key order, fields of newer protocols. A ValueError when the line has no state object."""
    text = raw.strip().decode()
    top = WHITESPACE.match(text).end()  # type: ignore[union-attr]
    _, start, end = [member for member in _members(text, top) if member[0] == "state"][-1]
    inner = list(_members(text, start))
    replaced = [member for member in inner if member[0] == "destinationStats"]
    if replaced:
        _, value_start, value_end = replaced[-1]
        return text[:value_start].encode(), text[value_end:].encode()
    close = end - 1
    return (text[:close] + ("," if inner else "") + '"destinationStats":').encode(), text[close:].encode()


def state_at(raw: bytes, stream: StreamKey | None) -> State:
    """A State of a raw STATE line checkpointing `stream`."""
    return State(*stats_splice(raw), stream)


def shown(name: str, limit: int = 100) -> str:
    """A name from the input as a log line may show it: cut short, and lone surrogates escaped."""
    return name[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def stream_words(stream: StreamKey) -> str:
    """A stream as a log line names it: `stream 'users'`, with `(namespace 'crm')` when it has one."""
    name, namespace = stream
    return f"stream '{shown(name)}'" + (f" (namespace '{shown(namespace)}')" if namespace else "")


class MalformedState(AirbyteTracedException):
    """A STATE message the sync cannot checkpoint; reading stops there."""


def malformed_state(number: int, why: str) -> MalformedState:
    """The error for a STATE message the sync cannot checkpoint."""
    message = f"The STATE message on input line {number} is malformed: {why}. Nothing after it was checkpointed."
    return MalformedState(internal_message=message, message=message, failure_type=FailureType.system_error)
