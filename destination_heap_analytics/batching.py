"""Groups Heap items into bulk requests: at most 1000 items and a byte cap each."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from operator import attrgetter
from typing import Any

import orjson

from .mapping import HeapItem
from .messages import StreamKey
from .pacing import MAX_ITEMS

KEY = attrgetter("key")


class ItemTooLarge(Exception):
    """An item whose JSON alone is larger than the request size cap."""

    def __init__(self, item: HeapItem, size: int) -> None:
        super().__init__(f"item of {size} bytes is larger than the request size cap")
        self.item = item


def encoded_tail(body: dict[str, Any]) -> bytes:
    """An item's JSON without its opening brace, which the request body puts back.

    Slicing the brace off copies the JSON to its own length: orjson's result holds a buffer far larger
    than its length, so a batch keeping a thousand of them held megabytes and took page faults.
    """
    return orjson.dumps(body)[1:]


def decoded(tail: bytes) -> dict[str, Any]:
    """An item's body back from its JSON (exact: what the mapping sends survives orjson's round trip)."""
    return orjson.loads(b"{" + tail)


class Batch:
    """Items bound for one bulk request, each encoded once (without its opening brace); items a builder
    added hold no body, their JSON being kept here."""

    __slots__ = ("encoded", "items", "number", "size")

    def __init__(self, number: int, items: list[HeapItem] | None = None, encoded: list[bytes] | None = None) -> None:
        self.number = number
        self.items = items if items is not None else []
        self.encoded = encoded if encoded is not None else [encoded_tail(item.body) for item in self.items]
        self.size = sum(map(len, self.encoded)) + 2 * len(self.encoded)

    def __len__(self) -> int:
        return len(self.items)

    def count_streams(self, counts: Counter[StreamKey | None]) -> None:
        """Adds the records the items stand for to `counts`, by stream (a merged item's updates each by its own)."""
        for item in self.items:
            for update in item.merged or (item,):
                counts[update.stream] += update.records

    @property
    def keys(self) -> list[str]:
        """The user or account key of each item, in order."""
        return list(map(KEY, self.items))

    @property
    def order_keys(self) -> frozenset[str]:
        """The keys whose updates must reach Heap in source order: each item's key, and its second key if any."""
        return frozenset(self.keys).union(item.also for item in self.items if item.also is not None)

    def parts(self, size: int) -> list[Batch]:
        """Batches with the same number holding `size` items each (the last may hold fewer), in order."""
        if 0 < len(self.items) <= size:
            return [self]
        return [
            Batch(self.number, self.items[start : start + size], self.encoded[start : start + size])
            for start in range(0, len(self.items), size)
        ]


class RequestBody:
    """Builds the body for one app id and API: the bulk form `{"app_id": ..., "<field>": [...]}`, or with no
    items field the single-call form, the one item's fields beside `app_id` (an empty batch: `app_id` alone)."""

    def __init__(self, app_id: str, items_field: str | None) -> None:
        app = orjson.dumps({"app_id": app_id})
        self.single = items_field is None
        self.prefix = app[:-1] if self.single else app[:-1] + b',"' + str(items_field).encode() + b'":['
        self.overhead = len(self.prefix) + 2

    def __call__(self, batch: Batch) -> bytes:
        encoded = batch.encoded
        if self.single:
            return self.prefix + (b"," + encoded[0] if encoded else b"}")
        if not encoded:
            return self.prefix + b"]}"
        return b"".join((self.prefix, b"{", b",{".join(encoded), b"]}"))


class BatchNumbers:
    """Numbers batches in the order their first record was read, across every builder of a sync."""

    def __init__(self) -> None:
        self.last = 0

    def take(self) -> int:
        """The next number."""
        self.last += 1
        return self.last


class BatchBuilder:
    """Fills one batch at a time; for property APIs, merges updates to the same key (later values win).

    A batch takes its number when its first item enters, so every number handed out belongs to a
    batch that holds records and will be sent. No merge crosses a STATE (`barrier`): an update read
    after one never joins an item read before it, so each STATE's records stay apart.
    """

    def __init__(
        self,
        body: RequestBody,
        max_bytes: int,
        merge: bool,
        numbers: BatchNumbers | None = None,
        max_items: int = MAX_ITEMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes - body.overhead
        self.merge = merge
        self.numbers = numbers or BatchNumbers()
        self.clock = clock
        self.batch = Batch(0)
        self.opened = 0.0
        self.index: dict[str, int] = {}
        self.mergeable_from = 0

    def barrier(self) -> None:
        """A STATE came: later updates are not merged into the items already in the open batch."""
        self.mergeable_from = len(self.batch.items)

    def add(self, item: HeapItem) -> Batch | None:
        """Adds an item; returns the previous batch when the item did not fit in it.

        An update to a key already in the open batch is merged into it, unless it came before the
        last STATE or the merged update would take the batch over the byte cap: then the batch is
        sealed and the update opens the next one (the pipeline sends two batches sharing a key one
        after the other).

        The batch keeps the item's JSON and the item lets go of its body: its values, read from the
        record moments ago, are freed while still in the CPU's caches, not a batch later when the
        request is answered (which cost about a tenth of the floor's CPU a record).
        """
        held = self.merge and item.key in self.index
        if held:
            at = self.index[item.key]
            if at >= self.mergeable_from and self._merge(at, item):
                return None
        encoded = orjson.dumps(item.body)[1:]  # encoded_tail in line: a call less an item
        size = len(encoded) + 2
        if size > self.max_bytes:
            raise ItemTooLarge(item, size - 1)
        full = None
        batch = self.batch
        if held or len(batch.items) >= self.max_items or batch.size + size > self.max_bytes:
            full = self.seal()
            batch = self.batch
        items = batch.items
        if not items:
            batch.number = self.numbers.take()
            self.opened = self.clock()
        if self.merge:
            self.index[item.key] = len(items)
        items.append(item)
        batch.encoded.append(encoded)
        batch.size += size
        item.body = None
        return full

    def seal(self) -> Batch | None:
        """Closes the open batch and returns it, or None when it is empty."""
        if not self.batch.items:
            return None
        full = self.batch
        self.batch = Batch(0)
        self.index = {}
        self.mergeable_from = 0
        return full

    def older_than(self, seconds: float) -> bool:
        """Whether the open batch holds items and took its first more than `seconds` ago."""
        return bool(self.batch.items) and self.clock() - self.opened >= seconds

    def _merge(self, at: int, item: HeapItem) -> bool:
        """Merges an update into the one at `at`; False, changing nothing, when the result would not fit.

        Each update of a merged item keeps its body, to be sent alone should Heap refuse the merge.
        """
        batch = self.batch
        merged = batch.items[at]
        current = decoded(batch.encoded[at])
        properties: dict[str, Any] = {**current["properties"], **item.body["properties"]}
        body = {**current, "properties": properties}
        encoded = encoded_tail(body)
        size = batch.size + len(encoded) - len(batch.encoded[at])
        if size > self.max_bytes:
            return False
        batch.size = size
        updates = (*(merged.merged or (replace(merged, body=current),)), item)
        batch.items[at] = HeapItem(
            merged.key, None, item.position, merged.records + 1, merged.notes + item.notes, None, updates
        )
        batch.encoded[at] = encoded
        return True
