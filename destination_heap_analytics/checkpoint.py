"""Decides when a STATE message may pass: once every record before it is settled."""

from __future__ import annotations

from collections import deque

from airbyte_cdk.models import AirbyteMessage, AirbyteStateStats


class CheckpointTracker:
    """Holds STATE messages until every batch holding records read before them is settled.

    Batches are numbered in the order records fill them; a batch is settled when Heap has
    accepted or definitively rejected each of its items.
    """

    def __init__(self) -> None:
        self.pending: deque[tuple[int, AirbyteMessage]] = deque()
        self.settled: set[int] = set()
        self.settled_through = 0

    def add(self, state: AirbyteMessage, through_batch: int, record_count: int) -> list[AirbyteMessage]:
        """Takes a STATE that covers batches up to `through_batch`; returns what may pass now."""
        state.state.destinationStats = AirbyteStateStats(recordCount=float(record_count))
        self.pending.append((through_batch, state))
        return self._ready()

    def settle(self, batch_number: int) -> list[AirbyteMessage]:
        """Marks a batch settled; returns the STATE messages that may pass now."""
        self.settled.add(batch_number)
        while self.settled_through + 1 in self.settled:
            self.settled_through += 1
            self.settled.remove(self.settled_through)
        return self._ready()

    def _ready(self) -> list[AirbyteMessage]:
        ready = []
        while self.pending and self.pending[0][0] <= self.settled_through:
            ready.append(self.pending.popleft()[1])
        return ready
