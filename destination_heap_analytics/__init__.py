"""An Airbyte destination that loads records into Heap Analytics through its server-side APIs."""

from .destination import DestinationHeapAnalytics

__all__ = ["DestinationHeapAnalytics"]
