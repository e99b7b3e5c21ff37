"""Decides when a STATE message may pass, and what record count it carries back to the platform."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from .messages import State, StreamKey


class CheckpointTracker:
    """Holds STATE messages until every batch holding records read before them is settled.

    Batches are numbered in the order records fill them; a batch is settled when Heap has
    accepted or definitively rejected each of its items. `received` counts the records of each
    stream since that stream's last STATE (the sync adds to it as it reads); a STREAM state
    carries its stream's count, a GLOBAL or LEGACY state the count of every record since the
    previous state, whatever its kind.
    """

    def __init__(self) -> None:
        self.pending: deque[tuple[int, dict[str, Any]]] = deque()
        self.settled: set[int] = set()
        self.settled_through = 0
        self.received: Counter[StreamKey] = Counter()
        self.read_at_last_state = 0

    def add(self, state: State, through_batch: int, records_read: int) -> list[dict[str, Any]]:
        """Takes a STATE that covers batches up to `through_batch`; returns the messages that may pass now."""
        count = records_read - self.read_at_last_state if state.stream is None else self.received.pop(state.stream, 0)
        self.read_at_last_state = records_read
        state.message["state"]["destinationStats"] = {"recordCount": float(count)}
        self.pending.append((through_batch, state.message))
        return self._ready()

    def settle(self, batch_number: int) -> list[dict[str, Any]]:
        """Marks a batch settled; returns the STATE messages that may pass now."""
        self.settled.add(batch_number)
        while self.settled_through + 1 in self.settled:
            self.settled_through += 1
            self.settled.remove(self.settled_through)
        return self._ready()

    def _ready(self) -> list[dict[str, Any]]:
        ready = []
        while self.pending and self.pending[0][0] <= self.settled_through:
            ready.append(self.pending.popleft()[1])
        return ready
