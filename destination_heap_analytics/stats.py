"""Counts what a sync did, for progress lines and the final summary."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .delivery import BatchResult
from .pacing import Pacer

logger = logging.getLogger("airbyte")

MAX_REASONS = 20
OTHER_REASONS = "other reasons"


def tally(counter: Counter[str], reason: str, count: int = 1) -> None:
    """Counts under a reason; past MAX_REASONS distinct reasons, under OTHER_REASONS, so totals stay small."""
    if reason not in counter and len(counter) >= MAX_REASONS:
        reason = OTHER_REASONS
    counter[reason] += count


@dataclass
class SyncStats:
    """Running totals of a sync; never holds record contents. In a dry run, what would have been delivered
    is counted apart: nothing was."""

    dry_run: bool = False
    records_read: int = 0
    records_would_send: int = 0
    records_delivered: int = 0
    items_delivered: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    paced_seconds: float = 0.0
    unmappable: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    adjusted: Counter[str] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    store: str | None = None
    stored: int = 0

    def add(self, result: BatchResult) -> None:
        """Adds one settled batch."""
        if self.dry_run:
            self.records_would_send += result.records
            return
        self.records_delivered += result.records
        self.items_delivered += result.items
        self.requests += result.requests
        self.retries += result.retries
        self.throttled += result.throttled
        for rejection in result.rejections:
            tally(self.rejected, rejection.reason)

    @property
    def records_rejected(self) -> int:
        """Records Heap refused."""
        return sum(self.rejected.values())

    @property
    def records_unmappable(self) -> int:
        """Records that could not become Heap items."""
        return sum(self.unmappable.values())

    def summary(self) -> dict[str, Any]:
        """The totals as plain data."""
        dry_run = {"dry_run": True, "records_that_would_be_sent": self.records_would_send} if self.dry_run else {}
        return {
            **dry_run,
            "records_read": self.records_read,
            "records_delivered": self.records_delivered,
            "records_rejected": self.records_rejected,
            "records_unmappable": self.records_unmappable,
            "items_delivered": self.items_delivered,
            "requests": self.requests,
            "retries": self.retries,
            "throttled_requests": self.throttled,
            "seconds_paced": round(self.paced_seconds, 3),
            "rejected_by_reason": dict(self.rejected),
            "unmappable_by_reason": dict(self.unmappable),
            "values_adjusted": dict(self.adjusted),
            "lines_unreadable": sum(self.unreadable.values()),
            "unreadable_by_reason": dict(self.unreadable),
            **({"rejected_records_stored": self.stored, "rejected_records_store": self.store} if self.store else {}),
        }


class ProgressLog:
    """Logs a sync's totals at a steady interval from a background thread, so a slow sync looks alive."""

    def __init__(self, stats: SyncStats, interval: float, pacers: Sequence[Pacer]) -> None:
        self.stats = stats
        self.interval = interval
        self.pacers = pacers
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="heap-progress", daemon=True)
        self.started = self.last_time = time.monotonic()
        self.last_delivered = 0

    def start(self) -> None:
        """Starts the periodic lines."""
        self.thread.start()

    def stop(self) -> None:
        """Stops the periodic lines."""
        self.stopped.set()

    def log(self, label: str) -> None:
        """Logs one line: totals, reasons, the rate since the last line, and time spent on rate limits."""
        stats, now = self.stats, time.monotonic()
        delivered = stats.records_would_send if stats.dry_run else stats.records_delivered
        rate = (delivered - self.last_delivered) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_delivered = now, delivered
        reasons = [f"rejected by Heap: {reason} x{count}" for reason, count in list(stats.rejected.items())]
        reasons += [f"not sendable: {reason} x{count}" for reason, count in list(stats.unmappable.items())]
        reasons += [f"adjusted: {note} x{count}" for note, count in list(stats.adjusted.items())]
        reasons += [f"unreadable lines: {reason} x{count}" for reason, count in list(stats.unreadable.items())]
        slowed = [pacer.slowed_to() for pacer in self.pacers]
        reasons += [f"paced at {per_minute:,.0f} items/min after Heap throttled" for per_minute in slowed if per_minute]
        logger.info(
            "%s after %.0fs: %d records read, %d %s, %d rejected by Heap, %d not sendable; "
            "%d requests (%d throttled, %d retried); %.0f records/s; %.1fs spent waiting on rate limits, "
            "%d requests waiting now.%s",
            label,
            now - self.started,
            stats.records_read,
            delivered,
            "would be sent" if stats.dry_run else "delivered",
            stats.records_rejected,
            stats.records_unmappable,
            stats.requests,
            stats.throttled,
            stats.retries,
            rate,
            sum(pacer.paced_seconds for pacer in self.pacers),
            sum(pacer.waiting for pacer in self.pacers),
            (" " + "; ".join(reasons)) if reasons else "",
        )

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            self.log("Progress")
