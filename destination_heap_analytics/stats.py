"""Counts what a sync did, from Heap's side, for progress lines, rejection lines and the final summary."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .delivery import Accepted, BatchResult
from .messages import StreamKey, stream_words
from .pacing import AppRate, WaitClock

logger = logging.getLogger("airbyte")

MAX_REASONS = 20
OTHER_REASONS = "other reasons"
LOGGED_PER_REASON = 10
"""Rejection lines logged for each reason class of one mapping; the rest are counted, and totalled at the end."""
MAPPINGS_SHOWN = 10
"""Mappings a progress line shows, busiest first; the summary holds them all."""


def tally(counter: Counter[str], reason: str, count: int = 1) -> None:
    """Counts under a reason; past MAX_REASONS distinct reasons, under OTHER_REASONS, so totals stay small."""
    if reason not in counter and len(counter) >= MAX_REASONS:
        reason = OTHER_REASONS
    counter[reason] += count


@dataclass
class MappingStats:
    """What one stream's records became in one API, counted per record and mapping (a stream with two
    mappings to one API counts each record twice here, and once in the sync's totals)."""

    stream: StreamKey
    api: str
    lane: Accepted
    """What Heap accepted of the lane the mapping sends to, by stream."""
    mappings: int = 1
    waiting: str = "in flight"
    """What the records sent and not yet answered are doing, in words."""
    sent: int = 0
    unchanged: int = 0
    """Records skipped because Heap already holds what they would send (change detection)."""
    refused: Counter[str] = field(default_factory=Counter)
    """Records Heap refused, by the class of its answer."""
    unsendable: Counter[str] = field(default_factory=Counter)
    """Records that could not become a Heap item, by reason."""

    @cached_property
    def name(self) -> str:
        """The mapping as people read it: `stream 'users' to track` (read once the sync's mappings are made)."""
        several = f" ({self.mappings} mappings)" if self.mappings > 1 else ""
        return f"{stream_words(self.stream)} to {self.api}{several}"

    @property
    def accepted(self) -> int:
        """Records Heap accepted (would be sent, in a dry run)."""
        return self.lane.of(self.stream)

    @property
    def read(self) -> int:
        """Records of the stream read (each is sent or unsendable, once per mapping)."""
        return (self.sent + self.unchanged + sum(self.unsendable.values())) // self.mappings

    @property
    def in_flight(self) -> int:
        """Records sent into a batch that Heap has not answered for yet."""
        return self.sent - self.accepted - sum(self.refused.values())

    def line(self, dry_run: bool) -> str:
        """The mapping's counts in words."""
        accepted = "would be sent" if dry_run else "accepted by Heap"
        words = [f"{self.read:,} read", f"{self.accepted:,} {accepted}"]
        if self.unchanged:
            words.append(f"{self.unchanged:,} unchanged (skipped: Heap holds them)")
        if self.refused:
            words.append(f"{sum(self.refused.values()):,} refused by Heap ({reasons(self.refused)})")
        if self.unsendable:
            words.append(f"{sum(self.unsendable.values()):,} not sendable ({reasons(self.unsendable)})")
        words.append(f"{self.in_flight:,} {self.waiting}")
        return f"{self.name}: " + ", ".join(words)

    def summary(self) -> dict[str, Any]:
        """The counts as plain data."""
        name, namespace = self.stream
        return {
            "stream": name,
            "namespace": namespace,
            "api": self.api,
            "mappings": self.mappings,
            "records_read": self.read,
            "records_accepted": self.accepted,
            "records_unchanged": self.unchanged,
            "records_refused_by_heap": sum(self.refused.values()),
            "records_not_sendable": sum(self.unsendable.values()),
            "refused_by_class": dict(self.refused),
            "not_sendable_by_reason": dict(self.unsendable),
        }


def reasons(counter: Counter[str]) -> str:
    """Reasons and their counts, most common first."""
    return ", ".join(f"{reason} x{count:,}" for reason, count in counter.most_common())


@dataclass
class SyncStats:
    """Running totals of a sync; never holds record contents. Each record is counted once in the totals:
    delivered, rejected by Heap or not sendable, by what first rejected it (as its STATE counts it). In a
    dry run, what would have been delivered is counted apart: nothing was."""

    dry_run: bool = False
    records_read: int = 0
    records_rejected: int = 0
    records_unmappable: int = 0
    records_unchanged: int = 0
    """Records no mapping sent because Heap already holds what each would send; delivered all the same."""
    mappings: dict[tuple[StreamKey, str], MappingStats] = field(default_factory=dict)
    batches: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    unmappable: Counter[str] = field(default_factory=Counter)
    adjusted: Counter[str] = field(default_factory=Counter)
    unreadable: Counter[str] = field(default_factory=Counter)
    waits: WaitClock = field(default_factory=WaitClock)
    store: str | None = None
    stored: int = 0
    deletions: list[dict[str, Any]] = field(default_factory=list)
    """Each deletion request Heap accepted: its id (to follow it up with Heap) and how many users it holds."""

    def mapping(
        self, stream: StreamKey, lane: str, api: str, accepted: Accepted, waiting: str = "in flight"
    ) -> MappingStats:
        """The counts of a stream's records in one lane, made on first use; a second mapping of the stream to
        the same lane shares them."""
        stats = self.mappings.get((stream, lane))
        if stats is None:
            stats = self.mappings[(stream, lane)] = MappingStats(stream, api, accepted, waiting=waiting)
        else:
            stats.mappings += 1
        return stats

    def add(self, result: BatchResult, lane: str) -> None:
        """Adds one settled batch of a lane."""
        for rejection in result.rejections:
            stats = self.mappings.get((rejection.stream, lane))  # type: ignore[arg-type]
            if stats is not None:
                tally(stats.refused, rejection.kind)
            tally(self.rejected, rejection.reason)
        self.batches += 1
        if self.dry_run:
            return
        self.requests += result.requests
        self.retries += result.retries
        self.throttled += result.throttled

    @property
    def records_delivered(self) -> int:
        """Records whose every item Heap accepted, once all are settled (at the end of a sync)."""
        return 0 if self.dry_run else self.records_read - self.records_rejected - self.records_unmappable

    def accepted(self) -> int:
        """Records Heap accepted (would be sent, in a dry run), per mapping."""
        return sum(stats.accepted for stats in self.mappings.values())

    def in_flight(self) -> int:
        """Records sent into a batch Heap has not answered for yet, per mapping."""
        return sum(stats.in_flight for stats in self.mappings.values())

    def summary(self) -> dict[str, Any]:
        """The totals as plain data."""
        if self.dry_run:
            dry_run = {
                "dry_run": True,
                "records_that_would_be_sent": self.records_read - self.records_unmappable - self.records_unchanged,
                "batches_that_would_be_sent": self.batches,
            }
        else:
            dry_run = {}
        return {
            **dry_run,
            "records_read": self.records_read,
            "records_delivered": self.records_delivered,
            "records_rejected": self.records_rejected,
            "records_unmappable": self.records_unmappable,
            "records_unchanged": self.records_unchanged,
            "requests": self.requests,
            "retries": self.retries,
            "throttled_requests": self.throttled,
            "seconds_paced": round(self.waits.seconds(), 3),
            "rejected_by_reason": dict(self.rejected),
            "unmappable_by_reason": dict(self.unmappable),
            "values_adjusted": dict(self.adjusted),
            "lines_unreadable": sum(self.unreadable.values()),
            "unreadable_by_reason": dict(self.unreadable),
            "mappings": [stats.summary() for stats in self.mappings.values()],
            **({"rejected_records_stored": self.stored, "rejected_records_store": self.store} if self.store else {}),
            **({"deletion_requests": list(self.deletions)} if self.deletions else {}),
        }


class RejectionLog:
    """Warns of rejected records, each line naming the record's place, its mapping, the reason's class and the
    reason; at most LOGGED_PER_REASON lines per class of one mapping, the rest counted and totalled at the end."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def warn(self, mapping: str, kind: str, line: str, *args: Any) -> None:
        """One rejection of `mapping` for a reason of class `kind`; `line % args` says which record and why (made
        only when it is logged)."""
        key = (mapping, kind)
        if key not in self.counts and len(self.counts) >= MAX_REASONS * MAPPINGS_SHOWN:
            key = ("other mappings", OTHER_REASONS)
        self.counts[key] += 1
        count = self.counts[key]
        if count < LOGGED_PER_REASON:
            logger.warning(line + ".", *args)
        elif count == LOGGED_PER_REASON:
            logger.warning(line + ". Later ones of this mapping for this reason are counted, not logged.", *args)

    def log_unlogged(self) -> None:
        """Says, per mapping and reason class, how many rejections were counted without a line."""
        for (mapping, kind), count in self.counts.items():
            if count > LOGGED_PER_REASON:
                logger.warning(
                    "%s: %d more records rejected (%s) than were logged.", mapping, count - LOGGED_PER_REASON, kind
                )


class ProgressLog:
    """Logs a sync's progress from Heap's side at a steady interval, from a background thread, so a slow sync
    looks alive and says how far it is: records read and what became of them, Heap's rate, the pace used."""

    def __init__(self, stats: SyncStats, interval: float, paces: Sequence[tuple[str, AppRate]]) -> None:
        self.stats = stats
        self.interval = interval
        self.paces = paces
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="heap-progress", daemon=True)
        self.started = self.last_time = time.monotonic()
        self.last_accepted = 0
        self.last_items = [rate.accepted_total for _, rate in paces]

    def start(self) -> None:
        """Starts the periodic lines."""
        self.thread.start()

    def stop(self) -> None:
        """Stops the periodic lines."""
        self.stopped.set()

    def log(self, label: str, final: bool = False) -> None:
        """Logs one line: the totals, Heap's rate over the interval (over the sync, for the last line), each
        pace's share used, the wall time spent waiting on the pace, what is in flight, each mapping's counts."""
        stats, now = self.stats, time.monotonic()
        if final:  # everything since the start
            self.last_time, self.last_accepted, self.last_items = self.started, 0, [0] * len(self.paces)
            over = "over the sync"
        else:
            over = f"over the last {now - self.last_time:.0f}s"
        seconds = max(now - self.last_time, 1e-9)
        accepted = stats.accepted()
        rate = (accepted - self.last_accepted) / seconds
        items = [pace.accepted_total for _, pace in self.paces]
        shares = [
            self._share(api, pace, (count - last) / seconds * 60)
            for (api, pace), count, last in zip(self.paces, items, self.last_items, strict=True)
        ]
        self.last_time, self.last_accepted, self.last_items = now, accepted, items
        in_flight = stats.in_flight()
        eta = "ETA unknown (Airbyte does not tell a destination how many records will come)"
        if in_flight and rate > 0:
            eta += f"; the {in_flight:,} in flight clear in about {in_flight / rate:,.0f}s at this rate"
        mappings = sorted(stats.mappings.values(), key=lambda mapping: -mapping.read)
        lines = [mapping.line(stats.dry_run) for mapping in mappings[:MAPPINGS_SHOWN]]
        if len(mappings) > MAPPINGS_SHOWN:
            lines.append(f"{len(mappings) - MAPPINGS_SHOWN} more mappings in the summary")
        extra = [f"adjusted: {note} x{count}" for note, count in list(stats.adjusted.items())]
        extra += [f"unreadable lines: {reason} x{count}" for reason, count in list(stats.unreadable.items())]
        logger.info(
            "%s after %.0fs: %s records read, %s rejected (%s by Heap, %s not sendable)%s; %s %s records/s %s; %s; "
            "%.1fs waiting on the pace (wall time); %s. %s.%s",
            label,
            now - self.started,
            f"{stats.records_read:,}",
            f"{stats.records_rejected + stats.records_unmappable:,}",
            f"{stats.records_rejected:,}",
            f"{stats.records_unmappable:,}",
            f", {stats.records_unchanged:,} unchanged (skipped)" if stats.records_unchanged else "",
            "would send" if stats.dry_run else "Heap accepted",
            f"{rate:,.0f}",
            over,
            "; ".join(shares) or "no requests",
            stats.waits.seconds(),
            eta,
            " | ".join(lines) or "No mapping",
            (" " + "; ".join(extra)) if extra else "",
        )

    def stream_ended(self, stream: StreamKey, status: str) -> None:
        """Logs a stream's mappings when the source says the stream ended (what is in flight is still sent)."""
        lines = [
            mapping.line(self.stats.dry_run) for mapping in self.stats.mappings.values() if mapping.stream == stream
        ]
        logger.info(
            "The source ended %s (%s). %s.", stream_words(stream), status, " | ".join(lines) or "No mapping loads it"
        )

    @staticmethod
    def _share(api: str, pace: AppRate, per_minute: float) -> str:
        """A pace's limit and the share of it Heap let through (`per_minute` items)."""
        if not pace.limit:
            return f"{api} pace: no per-app limit, {per_minute:,.0f} items/min"
        words = f"{api} limit: {pace.limit:,} items/min, {per_minute / pace.limit:.0%} of it used"
        if pace.rate < pace.ceiling:
            words += f" (paced at {pace.rate * 60:,.0f} items/min after Heap throttled)"
        return words

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            self.log("Progress")
