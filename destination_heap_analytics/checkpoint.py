"""Decides when a STATE message may pass, and what counts it carries back to the platform."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable

from .messages import State, StreamKey

Scope = StreamKey | None
"""What a STATE checkpoints: one stream, or (None) every stream, for GLOBAL and LEGACY states."""


class Rejections:
    """The records of one span rejected so far; positions are remembered only where one record can be
    rejected twice (a stream with several routes)."""

    __slots__ = ("count", "seen")

    def __init__(self) -> None:
        self.count = 0
        self.seen: set[int] | None = None

    def add(self, position: int, once: bool) -> bool:
        """Counts the record at `position`; with `once`, not if it was counted already. Whether it was counted."""
        if once:
            if self.seen is None:
                self.seen = set()
            if position in self.seen:
                return False
            self.seen.add(position)
        self.count += 1
        return True


class Tally:
    """The records of one stream read since its last STATE: the sync keeps this object at hand and counts
    each record on it, with no lookup."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class Held:
    """A STATE waiting for its records: what it covers, and the counts of its span."""

    __slots__ = ("position", "received", "rejected", "state", "through")

    def __init__(self, state: State, through: int, position: int, received: int, rejected: Rejections) -> None:
        self.state = state
        self.through = through
        self.position = position
        self.received = received
        self.rejected = rejected

    def line(self) -> bytes:
        """The STATE as it came, with the platform's counts for its span."""
        rejected = self.rejected.count
        stats = {"recordCount": float(self.received - rejected), "rejectedRecordCount": float(rejected)}
        return self.state.line(stats)


class CheckpointTracker:
    """Holds STATE messages until every batch holding records they cover is settled.

    Batches are numbered in the order records fill them; a batch is settled when Heap has accepted
    or definitively rejected each of its items. A STREAM state waits only for the batches holding
    its own stream's records, numbered up to the last one when it came; a GLOBAL or LEGACY state
    waits for every batch numbered so far. States of one scope pass in the order they came.

    Counts follow the platform's rule: a STREAM state's span is its stream's records since that
    stream's previous STATE; a GLOBAL or LEGACY state's, every record since the previous state of any
    kind. `recordCount` is the span's records delivered, `rejectedRecordCount` those rejected (by
    Heap, or before any request), so the two add up to what the span received. A record of a stream
    loaded through several routes is rejected once, however many of its routes rejected it.
    """

    def __init__(self, routed_twice: Iterable[StreamKey] = ()) -> None:
        self.received: dict[StreamKey, Tally] = {}
        self.read_at_last_state = 0
        self.routed_twice = frozenset(routed_twice)
        self.held: dict[Scope, deque[Held]] = defaultdict(deque)
        self.rejected_now: dict[Scope, Rejections] = {}
        self.batch_streams: dict[int, set[StreamKey]] = {}
        self.stream_batches: dict[StreamKey, set[int]] = {}
        self.held_bytes = 0
        self.held_count = 0

    def tally(self, stream: StreamKey) -> Tally:
        """The tally of `stream`'s records read since its last STATE."""
        tally = self.received.get(stream)
        if tally is None:
            tally = self.received[stream] = Tally()
        return tally

    def note(self, stream: StreamKey, batch_number: int) -> None:
        """A record of `stream` entered batch `batch_number`."""
        streams = self.batch_streams.get(batch_number)
        if streams is None:
            streams = self.batch_streams[batch_number] = set()
        if stream not in streams:
            streams.add(stream)
            self.stream_batches.setdefault(stream, set()).add(batch_number)

    def reject(self, stream: StreamKey, position: int) -> bool:
        """The record read at `position` (of `stream`) was rejected: counted in the span that holds it. False
        when it was counted already (another route of its stream rejected it first)."""
        once = stream in self.routed_twice
        first = True
        for scope in (stream, None):
            span = next((held for held in self.held.get(scope, ()) if held.position >= position), None)
            if span is not None:
                counted = span.rejected.add(position, once)
            else:
                rejections = self.rejected_now.get(scope)
                if rejections is None:
                    rejections = self.rejected_now[scope] = Rejections()
                counted = rejections.add(position, once)
            if scope is not None:
                first = counted
        return first

    def add(self, state: State, through_batch: int, records_read: int) -> list[bytes]:
        """Takes a STATE that covers batches up to `through_batch`; returns the lines that may pass now."""
        scope = state.stream
        if scope is None:
            received = records_read - self.read_at_last_state
        else:
            tally = self.received.get(scope) or Tally()
            received, tally.count = tally.count, 0
        rejected = self.rejected_now.pop(scope, None) or Rejections()
        if scope is not None:
            self.rejected_now.pop(None, None)
        self.read_at_last_state = records_read
        self.held[scope].append(Held(state, through_batch, records_read, received, rejected))
        self.held_bytes += state.size
        self.held_count += 1
        return self._ready([scope])

    def settle(self, batch_number: int) -> list[bytes]:
        """Marks a batch settled; returns the STATE lines that may pass now."""
        streams = self.batch_streams.pop(batch_number, ())
        for stream in streams:
            batches = self.stream_batches[stream]
            batches.discard(batch_number)
            if not batches:
                del self.stream_batches[stream]
        return self._ready([*streams, None])

    def _covered(self, scope: Scope, through: int) -> bool:
        batches = self.batch_streams if scope is None else self.stream_batches.get(scope)
        return not batches or min(batches) > through

    def _ready(self, scopes: Iterable[Scope]) -> list[bytes]:
        ready = []
        for scope in scopes:
            held = self.held.get(scope)
            while held and self._covered(scope, held[0].through):
                passing = held.popleft()
                self.held_bytes -= passing.state.size
                self.held_count -= 1
                ready.append(passing.line())
            if held is not None and not held:
                del self.held[scope]
        return ready
