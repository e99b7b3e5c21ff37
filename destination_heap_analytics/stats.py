"""Counts what a sync did, for progress lines and the final summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .delivery import BatchResult


@dataclass
class SyncStats:
    """Running totals of a sync; never holds record contents."""

    records_read: int = 0
    records_delivered: int = 0
    items_delivered: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    paced_seconds: float = 0.0
    unmappable: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    adjusted: Counter[str] = field(default_factory=Counter)

    def add(self, result: BatchResult) -> None:
        """Adds one settled batch."""
        self.records_delivered += result.records
        self.items_delivered += result.items
        self.requests += result.requests
        self.retries += result.retries
        self.throttled += result.throttled
        self.paced_seconds += result.paced_seconds
        for rejection in result.rejections:
            self.rejected[_reason_kind(rejection.reason)] += rejection.records

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
        return {
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
        }


def _reason_kind(reason: str) -> str:
    return reason if len(reason) <= 120 else reason[:117] + "..."
